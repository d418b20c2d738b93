#!/usr/bin/env node
// l4lb benchmark harness: races l4lb against HAProxy, nginx stream and a direct connection (and,
// when named, the minimal node:net proxy perf/floor.mjs) in one run on 127.0.0.1, and writes
// perf/RESULTS.md. Plain JS so it runs without a build.
// Usage: perf/run [tcp|udp] [--duration 10s] [--reps 3] [--quick] ... (perf/run --help)
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, availableParallelism, release } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProcessSet, PortPool, cpuTicks, descendants, statusKb, TICKS_PER_SECOND } from './lib/procs.mjs';
import {
  BODY,
  STREAM_MODULE,
  startHttpBackends,
  startIperfServer,
  startSockperfServer,
  startHaproxy,
  startNginxStream,
  startL4lb,
  unitEnvironment,
  startNodeFloor,
  l4lbAvailable,
} from './lib/targets.mjs';
import { runWrk, runIperf, runSockperf, udpCounters } from './lib/clients.mjs';
import { renderTable, renderTargets, appendResults, RATIO_COLUMNS } from './lib/report.mjs';
import { orderFor } from './lib/order.mjs';

const PERF_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(PERF_DIR, '..');
const INSTALL_HINT = 'apt-get install -y haproxy wrk iperf3 nginx-light libnginx-mod-stream sockperf';

const USAGE = `Usage: perf/run [tcp|udp] [options]        (npm run bench -- [options])

  tcp (default)        HTTP keep-alive, HTTP Connection: close, iperf3 bulk both ways
  udp                  sockperf ping-pong latency and one-way throughput, UDP receive-buffer drops

  --duration 10s       length of each measured run (ms, s or m suffix; default 10s)
  --reps N             repetitions; target order alternates each repetition; median reported (default 3)
  --quick              smoke run (~1 min): 3s x 1 rep, no HAProxy default-threads column, no RESULTS.md
  --targets LIST       comma list of direct,haproxy,haproxy-mt,nginx,l4lb (default: all available);
                       also node-floor (perf/floor.mjs, the least a node:net proxy does, or in
                       udp a node:dgram session proxy: Node's own floor), run only when named,
                       e.g. haproxy,node-floor,l4lb or udp --targets nginx,node-floor,l4lb
  --workloads LIST     tcp: keepalive,close,bulk-up,bulk-down   udp: pingpong,throughput
  --connections N      wrk connections (default 50)
  --pin                taskset: load generators on CPU 0, proxies on CPU 1 (backends float)
  --results / --no-results   write (or not) a dated section into perf/RESULTS.md
  --keep-tmp           keep the temp dir with configs and logs
  --l4lb PATH          l4lb CLI to run (default: bin/l4lb of this checkout)

Needs: ${INSTALL_HINT}`;

// ---- options -------------------------------------------------------------------------------

function parseDurationS(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new Error(`--duration: cannot read "${text}" (try 10s, 500ms, 1m)`);
  const v = Number(m[1]);
  const s = { ms: v / 1000, s: v, m: v * 60, undefined: v }[m[2]];
  if (s < 1) throw new Error(`--duration: ${text} is shorter than 1s (wrk and iperf3 count whole seconds)`);
  return Math.round(s);
}

function parseArgs(argv) {
  const o = {
    mode: 'tcp',
    durationS: 10,
    reps: 3,
    quick: false,
    targets: undefined,
    workloads: undefined,
    connections: 50,
    pin: false,
    results: undefined,
    keepTmp: false,
    l4lb: undefined,
  };
  const need = (i) => {
    if (argv[i + 1] === undefined) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  let durationSet = false;
  let repsSet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const val = () => (inline !== undefined ? inline : need(i++));
    switch (flag) {
      case 'tcp':
      case 'udp':
        o.mode = flag;
        break;
      case '-h':
      case '--help':
        console.log(USAGE);
        process.exit(0);
      case '--duration':
        o.durationS = parseDurationS(val());
        durationSet = true;
        break;
      case '--reps':
        o.reps = Number(val());
        if (!Number.isInteger(o.reps) || o.reps < 1) throw new Error('--reps must be a whole number ≥ 1');
        repsSet = true;
        break;
      case '--quick':
        o.quick = true;
        break;
      case '--targets':
        o.targets = val().split(',').filter(Boolean);
        break;
      case '--workloads':
        o.workloads = val().split(',').filter(Boolean);
        break;
      case '--connections':
        o.connections = Number(val());
        break;
      case '--pin':
        o.pin = true;
        break;
      case '--no-pin':
        o.pin = false;
        break;
      case '--results':
        o.results = true;
        break;
      case '--no-results':
        o.results = false;
        break;
      case '--keep-tmp':
        o.keepTmp = true;
        break;
      case '--l4lb':
        o.l4lb = resolve(val());
        break;
      default:
        throw new Error(`unknown argument "${a}"\n\n${USAGE}`);
    }
  }
  if (o.quick) {
    if (!durationSet) o.durationS = 3;
    if (!repsSet) o.reps = 1;
  }
  if (o.results === undefined) o.results = !o.quick;
  return o;
}

// ---- environment ---------------------------------------------------------------------------

function have(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function checkTools(opts) {
  const tools = opts.mode === 'udp' ? ['nginx', 'sockperf'] : ['haproxy', 'nginx', 'wrk', 'iperf3'];
  if (opts.pin) tools.push('taskset');
  const missing = tools.filter((t) => !have(t));
  let moduleMissing = false;
  try {
    readFileSync(STREAM_MODULE);
  } catch {
    moduleMissing = true;
  }
  if (missing.length || moduleMissing) {
    const what = [...missing, ...(moduleMissing ? [`nginx stream module (${STREAM_MODULE})`] : [])];
    console.error(`perf: missing ${what.join(', ')}.\nInstall the benchmark tools with:\n  ${INSTALL_HINT}`);
    process.exit(2);
  }
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
  }
}

function machine() {
  const cpu = (/^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8')) ?? [])[1] ?? 'unknown CPU';
  const nginxV = execFileSync('sh', ['-c', 'nginx -v 2>&1'], { encoding: 'utf8' }).trim().replace('nginx version: ', '');
  return {
    nproc: availableParallelism(),
    cpu,
    kernel: release(),
    node: process.version,
    haproxy: have('haproxy') ? sh('haproxy', ['-v']).split('\n')[0].replace(/ - https.*$/, '').replace(/^HAProxy version (\S+).*$/, 'HAProxy $1') : 'n/a',
    nginx: nginxV,
    wrk: have('wrk') ? (sh('wrk', ['-v']).match(/wrk \S+/) ?? ['wrk'])[0] : 'n/a',
    iperf3: have('iperf3') ? sh('iperf3', ['--version']).split('\n')[0].replace(/ \(.*$/, '') : 'n/a',
    sockperf: have('sockperf') ? (sh('sockperf', ['--version']).match(/version \S+/) ?? [''])[0] : 'n/a',
    commit: ((c) => (c.length > 80 ? `${c.slice(0, 79)}…` : c))(sh('git', ['-C', REPO_ROOT, 'log', '-1', '--format=%h %s'])),
  };
}

function httpGet(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** 1, 5 and 15 minute load averages. */
function loadAvg() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

function procPids(pid) {
  return [pid, ...descendants(pid)];
}

function cpuOf(pids) {
  return pids.flatMap(procPids).reduce((a, p) => a + cpuTicks(p), 0);
}

function peakRssMb(pids) {
  const kb = pids.flatMap(procPids).map((p) => statusKb(p, 'VmHWM') ?? 0);
  return kb.length ? Math.max(...kb) / 1024 : NaN;
}

// ---- main ----------------------------------------------------------------------------------

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`perf: ${e.message}`);
    process.exit(2);
  }
  checkTools(opts);
  const l4lbBin = opts.l4lb ?? l4lbAvailable(REPO_ROOT);
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-perf-'));
  const procs = new ProcessSet(dir);
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await procs.stopAll();
    if (!opts.keepTmp) rmSync(dir, { recursive: true, force: true });
    else console.log(`perf: configs and logs kept in ${dir}`);
  };
  process.on('exit', () => procs.killAllSync());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      console.error(`\nperf: ${sig}, stopping the processes this run started`);
      cleanup().finally(() => process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 })[sig]));
    });
  }
  const cpus = opts.pin ? { client: 0, proxy: 1, backend: undefined } : {};
  const loadStart = loadAvg();
  if (loadStart[0] > availableParallelism()) {
    console.warn(`perf: warning: load average ${loadStart.join(' ')} on ${availableParallelism()} CPUs before starting; other work on this box will add noise`);
  }
  try {
    const run = opts.mode === 'udp' ? runUdp : runTcp;
    const report = await run({ opts, procs, dir, ports: new PortPool(), cpus, l4lbBin });
    report.load = { start: loadStart, end: loadAvg() };
    await cleanup();
    finish(opts, report);
  } catch (e) {
    console.error(`perf: ${e.message ?? e}`);
    if (!opts.keepTmp) console.error('perf: (re-run with --keep-tmp to keep configs and logs)');
    await cleanup();
    process.exit(1);
  }
}

function l4lbNote(l4lbBin) {
  return l4lbBin
    ? undefined
    : 'l4lb not measured: bin/l4lb is not in this checkout yet (or pass --l4lb PATH); run `npm install` after it lands.';
}

/** all: the default targets; optional: also known, but run only when named in --targets. */
function chooseTargets(opts, all, l4lbBin, optional = []) {
  const known = [...all, ...optional];
  let ids = opts.targets ?? all.filter((t) => !(opts.quick && t === 'haproxy-mt'));
  for (const t of ids) if (!known.includes(t)) throw new Error(`--targets: unknown target "${t}" (known: ${known.join(', ')})`);
  if (!l4lbBin && ids.includes('l4lb')) {
    console.error(`perf: ${l4lbNote(l4lbBin)}`);
    ids = ids.filter((t) => t !== 'l4lb');
  }
  return ids;
}

async function runTcp({ opts, procs, dir, ports, cpus, l4lbBin }) {
  const ALL_WORKLOADS = ['keepalive', 'close', 'bulk-up', 'bulk-down'];
  const workloads = opts.workloads ?? ALL_WORKLOADS;
  for (const w of workloads) if (!ALL_WORKLOADS.includes(w)) throw new Error(`--workloads: unknown "${w}" for tcp (known: ${ALL_WORKLOADS.join(', ')})`);
  const ids = chooseTargets(opts, ['direct', 'haproxy', 'haproxy-mt', 'nginx', 'l4lb'], l4lbBin, ['node-floor']);
  const nproc = availableParallelism();

  const web = [await ports.take(), await ports.take()];
  const iperf = await ports.take();
  await startHttpBackends(procs, dir, web, cpus.backend);
  await startIperfServer(procs, iperf, cpus.backend);

  const targets = [];
  for (const id of ids) {
    const t = { id, pids: [] };
    if (id === 'direct') {
      Object.assign(t, { label: 'direct', short: 'direct', http: web[0], bulk: iperf });
    } else if (id === 'haproxy' || id === 'haproxy-mt') {
      const threads = id === 'haproxy' ? 1 : undefined;
      Object.assign(t, {
        label: threads ? 'HAProxy nbthread 1' : `HAProxy default threads (${nproc})`,
        short: threads ? 'HAProxy' : 'HAProxy-mt',
        http: await ports.take(),
        bulk: await ports.take(),
      });
      // The multi-thread column is about using every core, so it is never pinned to one.
      const s = await startHaproxy(procs, dir, id, { httpPort: t.http, bulkPort: t.bulk, backends: web, iperf, threads, cpus: threads ? cpus.proxy : undefined });
      t.pids.push(s.pid);
    } else if (id === 'nginx') {
      Object.assign(t, { label: 'nginx stream (1 worker)', short: 'nginx', http: await ports.take(), bulk: await ports.take() });
      const s = await startNginxStream(procs, dir, 'nginx-stream', { httpPort: t.http, bulkPort: t.bulk, backends: web, iperf, cpus: cpus.proxy });
      t.pids.push(s.pid);
    } else if (id === 'l4lb') {
      Object.assign(t, { label: 'l4lb', short: 'l4lb', http: await ports.take(), bulk: await ports.take() });
      // One process per listener: round-robin over the two web backends, and a single iperf3
      // backend so iperf3's control and data connections reach the same server.
      const a = await startL4lb(procs, 'l4lb-http', l4lbBin, { listen: t.http, backends: web }, cpus.proxy);
      const b = await startL4lb(procs, 'l4lb-bulk', l4lbBin, { listen: t.bulk, backends: [iperf] }, cpus.proxy);
      t.pids.push(a.pid, b.pid);
      t.names = ['http', 'bulk'];
    } else if (id === 'node-floor') {
      // Started and measured like l4lb: one process per listener, same backends.
      Object.assign(t, { label: 'Node floor (20-line net proxy)', short: 'node-floor', http: await ports.take(), bulk: await ports.take() });
      const a = await startNodeFloor(procs, 'node-floor-http', { listen: t.http, backends: web }, cpus.proxy);
      const b = await startNodeFloor(procs, 'node-floor-bulk', { listen: t.bulk, backends: [iperf] }, cpus.proxy);
      t.pids.push(a.pid, b.pid);
      t.names = ['http', 'bulk'];
    }
    targets.push(t);
  }
  procs.noteDescendants();

  // Sanity: every HTTP path answers 200 with the backend's body (twice: both round-robin legs).
  for (const t of targets) {
    for (let i = 0; i < 2; i++) {
      const r = await httpGet(t.http).catch((e) => ({ status: 0, body: String(e.message) }));
      if (r.status !== 200 || r.body !== BODY) throw new Error(`${t.label}: GET / through 127.0.0.1:${t.http} gave ${r.status} ${JSON.stringify(r.body.slice(0, 80))}`);
    }
  }

  const spec = {
    keepalive: { kind: 'wrk', headers: [] },
    close: { kind: 'wrk', headers: ['Connection: close'] },
    'bulk-up': { kind: 'iperf', reverse: false },
    'bulk-down': { kind: 'iperf', reverse: true },
  };
  const samples = {}; // `${workload}.${metric}` -> { target: number[] }
  const add = (key, target, v) => ((samples[key] ??= {})[target] ??= []).push(v);
  const problems = [];

  const warmS = Math.min(2, opts.durationS);
  console.log(`perf: tcp, targets ${ids.join(', ')}; ${opts.reps} rep(s) × ${workloads.length} workloads × ${opts.durationS}s${opts.pin ? '; pinned (clients CPU 0, proxies CPU 1)' : ''}`);
  console.log(`perf: warm-up ${warmS}s of keep-alive per target`);
  for (const t of targets) await runWrk(procs, { port: t.http, durationS: warmS, connections: opts.connections, cpus: cpus.client });

  for (let r = 0; r < opts.reps; r++) {
    const order = orderFor(targets, r);
    for (const w of workloads) {
      const s = spec[w];
      for (const t of order) {
        const cpu0 = cpuOf(t.pids);
        const t0 = process.hrtime.bigint();
        const res =
          s.kind === 'wrk'
            ? await runWrk(procs, { port: t.http, durationS: opts.durationS, connections: opts.connections, headers: s.headers, cpus: cpus.client })
            : await runIperf(procs, { port: t.bulk, durationS: opts.durationS, reverse: s.reverse, cpus: cpus.client });
        const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpuPct = t.pids.length ? ((cpuOf(t.pids) - cpu0) / TICKS_PER_SECOND / wallS) * 100 : NaN;
        let line;
        if (res.failed) {
          problems.push(`rep ${r + 1} ${w} ${t.label}: ${res.failed}`);
          line = `FAILED ${res.failed}`;
          add(`${w}.main`, t.id, NaN);
        } else if (s.kind === 'wrk') {
          add(`${w}.main`, t.id, res.rps);
          add(`${w}.p99`, t.id, res.p99Ms);
          if (res.errors > 0) problems.push(`rep ${r + 1} ${w} ${t.label}: ${res.errorDetail}`);
          line = `${Math.round(res.rps)} req/s, p50 ${res.p50Ms.toFixed(2)} ms, p99 ${res.p99Ms.toFixed(2)} ms${res.errors ? `, ${res.errors} errors` : ''}`;
        } else {
          add(`${w}.main`, t.id, res.gbps);
          line = `${res.gbps.toFixed(2)} Gbit/s, ${res.retransmits} retransmits`;
        }
        if (Number.isFinite(cpuPct)) {
          add(`${w}.cpu`, t.id, cpuPct);
          // Work per proxy CPU-second: far less sensitive than raw rates to other load on a shared box.
          const main = samples[`${w}.main`][t.id].at(-1);
          if (Number.isFinite(main) && cpuPct > 0) add(`${w}.eff`, t.id, main / (cpuPct / 100));
        }
        console.log(`  rep ${r + 1}/${opts.reps} ${w.padEnd(9)} ${t.label.padEnd(28)} ${line}${Number.isFinite(cpuPct) ? `  (proxy CPU ${Math.round(cpuPct)}%)` : ''}`);
        // Let TIME_WAIT and backlog settle after connection churn before the next target.
        await sleep(w === 'close' ? 1500 : 300);
      }
    }
  }

  const rss = {};
  const rssDetail = [];
  for (const t of targets) {
    if (!t.pids.length) continue;
    rss[t.id] = [peakRssMb(t.pids)];
    const each = t.pids.map((p, i) => `${t.names ? `${t.names[i]} ` : ''}${peakRssMb([p]).toFixed(1)}`);
    rssDetail.push(`${t.label} ${each.join(' / ')} MB`);
  }

  const label = { keepalive: 'keep-alive', close: 'Connection: close', 'bulk-up': 'bulk client→server', 'bulk-down': 'bulk server→client (-R)' };
  const rows = [];
  for (const w of workloads) {
    if (spec[w].kind === 'wrk') {
      rows.push({ id: `${w}.main`, label: `${label[w]} · ${w === 'close' ? 'connections' : 'requests'}/s`, unit: w === 'close' ? 'conn/s' : 'req/s', better: 'higher', kind: 'int', values: samples[`${w}.main`] ?? {} });
      rows.push({ id: `${w}.p99`, label: `${label[w]} · p99 latency`, unit: 'ms', better: 'lower', kind: 'ms', values: samples[`${w}.p99`] ?? {} });
    } else {
      rows.push({ id: `${w}.main`, label: `${label[w]} · iperf3 1 stream`, unit: 'Gbit/s', better: 'higher', kind: 'gbps', values: samples[`${w}.main`] ?? {} });
    }
  }
  for (const w of workloads) rows.push({ id: `${w}.cpu`, label: `proxy CPU during ${label[w]}`, unit: '% of one core', better: null, kind: 'pct', values: samples[`${w}.cpu`] ?? {} });
  for (const w of workloads) {
    const per = spec[w].kind === 'wrk' ? (w === 'close' ? 'conn' : 'req') : 'Gbit/s';
    rows.push({ id: `${w}.eff`, label: `${label[w]} · per proxy CPU-second`, unit: spec[w].kind === 'wrk' ? `${per}/s per core` : 'Gbit/s per core', better: 'higher', kind: spec[w].kind === 'wrk' ? 'int' : 'gbps', values: samples[`${w}.eff`] ?? {} });
  }
  rows.push({ id: 'rss', label: 'peak RSS over the run (VmHWM, largest process)', unit: 'MB', better: null, kind: 'mb', values: rss });

  const goals = [
    { row: 'keepalive.main', label: 'keep-alive requests/s', min: 0.9 },
    { row: 'close.main', label: 'connection rate (Connection: close)', min: 0.7 },
    { row: 'bulk-up.main', label: 'bulk throughput client→server', min: 0.9 },
    { row: 'bulk-down.main', label: 'bulk throughput server→client', min: 0.9 },
  ].filter((g) => rows.some((r) => r.id === g.row));

  const notes = [
    'Backends: one nginx (worker_processes 1, static 29-byte file, keep-alive) on two ports, round-robin; one iperf3 server for bulk (each proxy has a one-backend listener for it).',
    'HAProxy: mode tcp, maxconn 4000; the headline column runs nbthread 1 because l4lb is one Node thread; "default threads" is informational.',
    'nginx stream: worker_processes 1, proxy_pass to the same upstreams.',
    `wrk -t1 -c${opts.connections} -d${opts.durationS}s --latency (close adds -H 'Connection: close'); iperf3 -P 1 -t ${opts.durationS} (down adds -R).`,
    ids.includes('l4lb') ? `l4lb: \`--check none --log-level warn\`, one process per listener (HTTP: 2 backends round-robin; bulk: 1 backend), with the environment of conf/l4lb.service (${Object.entries(unitEnvironment(l4lbBin)).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}); the RSS row shows the larger of the two.` : undefined,
    ids.includes('node-floor')
      ? 'node-floor: perf/floor.mjs, the least any node:net proxy does (pauseOnConnect, net.connect round-robin, `pipe` both ways; no timeouts, health, PROXY or stats); run like l4lb, one process per listener. It shows what Node\'s socket layer costs by itself on this box: node-floor/HAProxy is the share of HAProxy any node:net proxy reaches here, l4lb/node-floor how close l4lb is to that floor.'
      : undefined,
    `Peak RSS per process (VmHWM; nginx counts master+worker as one target, largest shown): ${rssDetail.join('; ')}.`,
    '"per proxy CPU-second" = rate ÷ (proxy CPU time ÷ wall time), from /proc/PID/stat: how much work the proxy does per core-second it actually got, which other load on the box disturbs much less than the raw rate.',
    l4lbNote(l4lbBin),
    opts.pin ? 'Placement: wrk/iperf3 pinned to CPU 0, proxies to CPU 1 (taskset), backends unpinned; HAProxy default-threads unpinned.' : 'Placement: no CPU pinning (load generator, proxy and backends share both cores).',
  ].filter(Boolean);

  // node-floor columns appear only when it was asked for (renderTable drops pairs not present).
  return { mode: 'tcp', columns: targets.map((t) => ({ id: t.id, label: t.label, short: t.short })), rows, goals, notes, problems, samples, ratioAgainst: RATIO_COLUMNS.tcp };
}

async function runUdp({ opts, procs, dir, ports, cpus, l4lbBin }) {
  const ALL = ['pingpong', 'throughput'];
  const workloads = opts.workloads ?? ALL;
  for (const w of workloads) if (!ALL.includes(w)) throw new Error(`--workloads: unknown "${w}" for udp (known: ${ALL.join(', ')})`);
  const ids = chooseTargets(opts, ['direct', 'nginx', 'l4lb'], l4lbBin, ['node-floor']);
  const back = [await ports.take(), await ports.take()];
  const skipped = [];
  await startSockperfServer(procs, 'backend-sockperf-1', back[0], cpus.backend);
  await startSockperfServer(procs, 'backend-sockperf-2', back[1], cpus.backend);

  const targets = [];
  for (const id of ids) {
    const t = { id, pids: [] };
    if (id === 'direct') Object.assign(t, { label: 'direct', short: 'direct', port: back[0] });
    if (id === 'nginx') {
      Object.assign(t, { label: 'nginx stream udp (1 worker)', short: 'nginx', port: await ports.take() });
      const s = await startNginxStream(procs, dir, 'nginx-stream-udp', { udp: { port: t.port, backends: back }, cpus: cpus.proxy });
      t.pids.push(s.pid);
    }
    if (id === 'l4lb') {
      Object.assign(t, { label: 'l4lb --protocol udp', short: 'l4lb', port: await ports.take() });
      try {
        const s = await startL4lb(procs, 'l4lb-udp', l4lbBin, { listen: t.port, backends: back, protocol: 'udp' }, cpus.proxy);
        t.pids.push(s.pid);
      } catch (e) {
        // UDP landed after TCP in l4lb; an older checkout exits at once. Measure the rest.
        const why = `l4lb --protocol udp did not start (UDP not in this checkout yet?): ${String(e.message).split('\n')[0]}`;
        console.error(`perf: ${why}`);
        skipped.push(why);
        continue;
      }
    }
    if (id === 'node-floor') {
      // Started and measured like l4lb --protocol udp: one process, the same two backends.
      Object.assign(t, { label: 'Node floor (dgram session proxy)', short: 'node-floor', port: await ports.take() });
      const s = await startNodeFloor(procs, 'node-floor-udp', { listen: t.port, backends: back, protocol: 'udp' }, cpus.proxy);
      t.pids.push(s.pid);
    }
    targets.push(t);
  }
  procs.noteDescendants();

  const samples = {};
  const add = (key, target, v) => ((samples[key] ??= {})[target] ??= []).push(v);
  const problems = [];
  console.log(`perf: udp, targets ${targets.map((t) => t.id).join(', ')}; ${opts.reps} rep(s) × ${workloads.length} workloads × ${opts.durationS}s`);
  for (const t of targets) await runSockperf(procs, 'ping-pong', { port: t.port, durationS: 1, msgSize: 64, cpus: cpus.client });

  for (let r = 0; r < opts.reps; r++) {
    for (const w of workloads) {
      for (const t of orderFor(targets, r)) {
        const before = await udpCounters();
        const cpu0 = cpuOf(t.pids);
        const t0 = process.hrtime.bigint();
        const res =
          w === 'pingpong'
            ? await runSockperf(procs, 'ping-pong', { port: t.port, durationS: opts.durationS, msgSize: 64, cpus: cpus.client })
            : await runSockperf(procs, 'throughput', { port: t.port, durationS: opts.durationS, msgSize: 1472, mps: 'max', cpus: cpus.client });
        const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
        await sleep(300); // let in-flight datagrams land before reading the drop counter
        const after = await udpCounters();
        const drops = after.RcvbufErrors - before.RcvbufErrors;
        const cpuPct = t.pids.length ? ((cpuOf(t.pids) - cpu0) / TICKS_PER_SECOND / wallS) * 100 : NaN;
        let line;
        if (res.failed) {
          problems.push(`rep ${r + 1} ${w} ${t.label}: ${res.failed}`);
          add(`${w}.main`, t.id, NaN);
          line = `FAILED ${res.failed}`;
        } else if (w === 'pingpong') {
          add(`${w}.main`, t.id, res.rtPerSec);
          add(`${w}.p50`, t.id, res.p50Us);
          add(`${w}.p99`, t.id, res.p99Us);
          line = `${Math.round(res.rtPerSec)} round trips/s, p50 ${res.p50Us} us, p99 ${res.p99Us} us, lost ${res.sent - res.received}`;
        } else {
          const delivered = (res.sent - drops) / res.seconds;
          add(`${w}.sent`, t.id, res.msgPerSec);
          add(`${w}.main`, t.id, delivered);
          add(`${w}.drops`, t.id, drops);
          line = `${res.msgPerSec} msg/s sent, ~${Math.round(delivered)} msg/s delivered, RcvbufErrors +${drops} (${((drops / res.sent) * 100).toFixed(1)}% of sent)`;
        }
        if (Number.isFinite(cpuPct)) add(`${w}.cpu`, t.id, cpuPct);
        console.log(`  rep ${r + 1}/${opts.reps} ${w.padEnd(10)} ${t.label.padEnd(28)} ${line}${Number.isFinite(cpuPct) ? `  (proxy CPU ${Math.round(cpuPct)}%)` : ''}`);
        await sleep(300);
      }
    }
  }
  const rss = {};
  for (const t of targets) if (t.pids.length) rss[t.id] = [peakRssMb(t.pids)];
  const rows = [];
  if (workloads.includes('pingpong')) {
    rows.push({ id: 'pingpong.main', label: 'ping-pong 64 B · round trips/s', unit: '1/s', better: 'higher', kind: 'int', values: samples['pingpong.main'] ?? {} });
    rows.push({ id: 'pingpong.p50', label: 'ping-pong 64 B · p50 RTT', unit: 'µs', better: 'lower', kind: 'us', values: samples['pingpong.p50'] ?? {} });
    rows.push({ id: 'pingpong.p99', label: 'ping-pong 64 B · p99 RTT', unit: 'µs', better: 'lower', kind: 'us', values: samples['pingpong.p99'] ?? {} });
  }
  if (workloads.includes('throughput')) {
    rows.push({ id: 'throughput.sent', label: 'one-way 1472 B · sent', unit: 'msg/s', better: null, kind: 'int', values: samples['throughput.sent'] ?? {} });
    rows.push({ id: 'throughput.main', label: 'one-way 1472 B · delivered (sent − drops)', unit: 'msg/s', better: 'higher', kind: 'int', values: samples['throughput.main'] ?? {} });
    rows.push({ id: 'throughput.drops', label: 'one-way 1472 B · RcvbufErrors delta', unit: 'datagrams', better: 'lower', kind: 'int', values: samples['throughput.drops'] ?? {} });
  }
  for (const w of workloads) rows.push({ id: `${w}.cpu`, label: `proxy CPU during ${w}`, unit: '% of one core', better: null, kind: 'pct', values: samples[`${w}.cpu`] ?? {} });
  rows.push({ id: 'rss', label: 'peak RSS over the run (VmHWM)', unit: 'MB', better: null, kind: 'mb', values: rss });
  const notes = [
    'Backends: two `sockperf server` on 127.0.0.1; direct goes to the first. RTT is a full round trip (`--full-rtt`).',
    'Delivered = (sent − kernel-wide UDP RcvbufErrors delta) / duration: every drop on loopback is a full receive buffer at the proxy or a backend socket.',
    'No UDP targets from the issue; HAProxy has no UDP proxy, so nginx stream is the reference.',
    ids.includes('node-floor')
      ? 'node-floor: perf/floor.mjs --protocol udp, the least a node:dgram session proxy does (one listener; per client address:port a dgram socket connect()ed to a backend round-robin, datagrams queued until the connect completes, replies sent from the listener; no idle timeout, limits, buffer sizing or health); run like l4lb, one process. node-floor/nginx is the share of nginx stream any node:dgram proxy reaches here, l4lb/node-floor how close l4lb is to that floor.'
      : undefined,
    l4lbNote(l4lbBin),
    ...skipped,
  ].filter(Boolean);
  // node-floor columns appear only when it was asked for (renderTable drops pairs not present).
  return { mode: 'udp', columns: targets.map((t) => ({ id: t.id, label: t.label, short: t.short })), rows, goals: [], notes, problems, samples, ratioAgainst: RATIO_COLUMNS.udp };
}

function finish(opts, report) {
  const m = machine();
  const table = renderTable(report.rows, report.columns, report.ratioAgainst ?? ['haproxy', 'nginx', 'direct']);
  const targets = report.goals.length ? renderTargets(report.rows, report.goals) : undefined;
  const command = ['perf/run', ...process.argv.slice(2)].map((a) => (/^[\w./=,:-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
  const when = new Date().toISOString().replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC');
  console.log(`\n${table}\n`);
  if (targets) console.log(`${targets.text}\n`);
  for (const p of report.problems) console.log(`problem: ${p}`);

  const outDir = join(PERF_DIR, 'out');
  mkdirSync(outDir, { recursive: true });
  const rawFile = join(outDir, `${report.mode}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(rawFile, JSON.stringify({ command, when, machine: m, opts, samples: report.samples, problems: report.problems }, null, 2));
  console.log(`perf: raw samples in ${rawFile}`);

  if (!opts.results) {
    console.log('perf: RESULTS.md not updated (quick run or --no-results; pass --results to record it)');
    return;
  }
  const section = [
    `## ${when} · ${report.mode} · ${opts.durationS}s × ${opts.reps} rep${opts.reps > 1 ? 's' : ''}${opts.pin ? ' · pinned' : ''}${opts.quick ? ' (quick)' : ''}`,
    '',
    `Command: \`${command}\` (as \`npm run bench${process.argv.length > 2 ? ` -- ${command.slice('perf/run '.length)}` : ''}\`)`,
    '',
    `Machine: ${m.nproc} CPUs (${m.cpu}), Linux ${m.kernel}; node ${m.node}; ${m.haproxy}; ${m.nginx}; ${report.mode === 'tcp' ? `${m.wrk}; ${m.iperf3}` : `sockperf ${m.sockperf}`}. Checkout: ${m.commit}.`,
    '',
    `Load average (1/5/15 min) at start ${report.load.start.join(' ')}, at end ${report.load.end.join(' ')}: the harness's own processes count too (a run keeps about 2 busy), more than that is other work on the box.`,
    '',
    table,
    '',
    ...(targets ? ['Targets (from the issue, l4lb against HAProxy nbthread 1):', '', targets.text, ''] : []),
    ...report.notes.map((n) => `- ${n}`),
    ...(report.problems.length ? ['', 'Problems seen during the run:', ...report.problems.map((p) => `- ${p}`)] : []),
    '',
  ].join('\n');
  appendResults(join(PERF_DIR, 'RESULTS.md'), section);
  console.log('perf: added a section to perf/RESULTS.md');
}

await main();
