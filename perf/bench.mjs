#!/usr/bin/env node
// l4lb benchmark harness: races l4lb against HAProxy, nginx stream and a direct connection (and,
// when named, the minimal node:net proxy perf/floor.mjs) in one run on 127.0.0.1, and writes
// perf/RESULTS.md. Plain JS so it runs without a build.
// Usage: perf/run [tcp|udp] [--duration 10s] [--reps 3] [--quick] ... (perf/run --help)
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, availableParallelism, release } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, spawnSync } from 'node:child_process';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProcessSet, PortPool, cpuTicks, cpuSplit, descendants, statusKb, waitListening, tail, TICKS_PER_SECOND } from './lib/procs.mjs';
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
  firstLogLine,
} from './lib/targets.mjs';
import { runWrk, runIperf, runSockperf, udpCounters } from './lib/clients.mjs';
import { renderTable, renderTargets, appendResults, RATIO_COLUMNS } from './lib/report.mjs';
import { renderChart } from './lib/chart.mjs';
import { orderFor } from './lib/order.mjs';
import { openIdle, closeAll, closedCount, perConnectionKb, sampleFor } from './lib/idle.mjs';
import { fdCount } from './lib/procs.mjs';

const PERF_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(PERF_DIR, '..');
const INSTALL_HINT = 'apt-get install -y haproxy wrk iperf3 nginx-light libnginx-mod-stream sockperf';

const USAGE = `Usage: perf/run [tcp|udp|idle|soak] [options]        (npm run bench -- [options])

  tcp (default)        HTTP keep-alive, HTTP Connection: close, iperf3 bulk both ways
  udp                  sockperf ping-pong latency and one-way throughput, UDP receive-buffer drops
  idle                 N idle proxied connections per target: RSS per connection, RSS after they close
  soak                 l4lb alone for --duration (default 10m): keep-alive, churn, UDP, SIGHUP every
                       30s, RSS and fds sampled; exits 1 on any error (not for CI)

  --duration 10s       length of each measured run (ms, s or m suffix; default 10s)
  --reps N             repetitions; target order alternates each repetition; median reported (default 3)
  --quick              smoke run (~1 min): 3s x 1 rep, no HAProxy default-threads column, no RESULTS.md
  --targets LIST       comma list of direct,haproxy,haproxy-mt,nginx,l4lb (default: all available);
                       also node-floor (perf/floor.mjs, the least a node:net proxy does, or in
                       udp a node:dgram session proxy: Node's own floor), run only when named,
                       e.g. haproxy,node-floor,l4lb or udp --targets nginx,node-floor,l4lb;
                       haproxy-splice (HAProxy with option splice-auto) and l4lb-native
                       (--data-plane native; skipped with a message where refused), when named;
                       l4lb-bin (bin/l4lb run directly, no unit env) and l4lb-bare (node bin/l4lb
                       without GLIBC_TUNABLES): does bulk speed depend on how l4lb is started?
  --threads N          HAProxy nbthread and l4lb-native --threads (default 1), e.g. --threads 2
                       --targets haproxy,haproxy-splice,l4lb-native
  --idle-conns N       idle: connections per target (default 9000; at most 9500)
  --idle-wait 60s      idle: how long RSS is watched after they close (default 60s; 0 = one look)
  --workloads LIST     tcp: keepalive,close,bulk-up,bulk-down   udp: pingpong,throughput
  --connections N      wrk connections (default 50)
  --pin                taskset: load generators on CPU 0, proxies on CPU 1 (backends float)
  --results / --no-results   write (or not) a dated section into perf/RESULTS.md
  --keep-tmp           keep the temp dir with configs and logs
  --l4lb PATH          l4lb CLI to run (default: bin/l4lb of this checkout)

Needs: ${INSTALL_HINT}`;

// ---- options -------------------------------------------------------------------------------

function parseDurationS(text, { min = 1, flag = '--duration' } = {}) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new Error(`${flag}: cannot read "${text}" (try 10s, 500ms, 1m)`);
  const v = Number(m[1]);
  const s = { ms: v / 1000, s: v, m: v * 60, undefined: v }[m[2]];
  if (s < min) throw new Error(`${flag}: ${text} is shorter than ${min}s (wrk and iperf3 count whole seconds)`);
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
    threads: 1,
    idleConns: 9000,
    idleWaitS: 60,
    soakS: 600,
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
      case 'idle':
      case 'soak':
        o.mode = flag;
        break;
      case '-h':
      case '--help':
        console.log(USAGE);
        process.exit(0);
      case '--duration':
        o.durationS = parseDurationS(val());
        durationSet = true;
        o.durationSet = true;
        break;
      case '--threads':
        o.threads = Number(val());
        if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 64) throw new Error('--threads must be a whole number from 1 to 64');
        break;
      case '--idle-conns':
        o.idleConns = Number(val());
        if (!Number.isInteger(o.idleConns) || o.idleConns < 1 || o.idleConns > 9500) throw new Error('--idle-conns must be a whole number from 1 to 9500 (HAProxy refuses maxconn much above 9,000 under a 20,000 open-file limit)');
        break;
      case '--idle-wait':
        o.idleWaitS = parseDurationS(val(), { min: 0, flag: '--idle-wait' });
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
  const tools = { udp: ['nginx', 'sockperf'], soak: ['nginx', 'wrk', 'sockperf'], idle: ['haproxy', 'nginx', 'iperf3'] }[opts.mode] ?? ['haproxy', 'nginx', 'wrk', 'iperf3'];
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

function splitOf(pids) {
  return pids.flatMap(procPids).reduce((a, p) => {
    const c = cpuSplit(p);
    return { user: a.user + c.user, sys: a.sys + c.sys };
  }, { user: 0, sys: 0 });
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
    const run = { tcp: runTcp, udp: runUdp, idle: runIdle, soak: runSoak }[opts.mode];
    const report = await run({ opts, procs, dir, ports: new PortPool(), cpus, l4lbBin });
    report.load = { start: loadStart, end: loadAvg() };
    await cleanup();
    finish(opts, report);
    if (report.failed) {
      console.error(`perf: ${opts.mode} failed: ${report.problems.length} problem(s) above`);
      process.exit(1);
    }
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

/**
 * Starts the TCP targets of `ids` (each with an HTTP listener over both web backends and a bulk
 * listener to the one iperf3 server). A target that cannot start for a reason of its own (l4lb's
 * native plane not in this checkout or refused) is skipped with a line in `skipped`.
 */
async function startTcpTargets({ ids, opts, procs, dir, ports, cpus, l4lbBin, web, iperf, maxconn }) {
  const nproc = availableParallelism();
  const threads = opts.threads;
  const targets = [];
  const skipped = [];
  for (const id of ids) {
    const t = { id, pids: [] };
    if (id === 'direct') {
      Object.assign(t, { label: 'direct', short: 'direct', http: web[0], bulk: iperf });
    } else if (id === 'haproxy' || id === 'haproxy-mt' || id === 'haproxy-splice') {
      const n = id === 'haproxy-mt' ? undefined : threads;
      const splice = id === 'haproxy-splice';
      Object.assign(t, {
        label: n ? `HAProxy nbthread ${n}${splice ? ' splice-auto' : ''}` : `HAProxy default threads (${nproc})`,
        short: splice ? 'HAProxy-splice' : n ? 'HAProxy' : 'HAProxy-mt',
        http: await ports.take(),
        bulk: await ports.take(),
      });
      // The multi-thread column is about using every core, so it is never pinned to one.
      const s = await startHaproxy(procs, dir, id, { httpPort: t.http, bulkPort: t.bulk, backends: web, iperf, threads: n, splice, maxconn, cpus: n === 1 ? cpus.proxy : undefined });
      t.pids.push(s.pid);
    } else if (id === 'nginx') {
      Object.assign(t, { label: 'nginx stream (1 worker)', short: 'nginx', http: await ports.take(), bulk: await ports.take() });
      const s = await startNginxStream(procs, dir, 'nginx-stream', { httpPort: t.http, bulkPort: t.bulk, backends: web, iperf, cpus: cpus.proxy });
      t.pids.push(s.pid);
    } else if (id === 'l4lb') {
      Object.assign(t, { label: 'l4lb', short: 'l4lb', http: await ports.take(), bulk: await ports.take() });
      // One process per listener: round-robin over the two web backends, and a single iperf3
      // backend so iperf3's control and data connections reach the same server.
      const a = await startL4lb(procs, 'l4lb-http', l4lbBin, { listen: t.http, backends: web, ...nodePlane(l4lbBin) }, cpus.proxy);
      const b = await startL4lb(procs, 'l4lb-bulk', l4lbBin, { listen: t.bulk, backends: [iperf], ...nodePlane(l4lbBin) }, cpus.proxy);
      t.pids.push(a.pid, b.pid);
      t.names = ['http', 'bulk'];
    } else if (id === 'l4lb-bin' || id === 'l4lb-bare') {
      // How l4lb is started should not change its speed (issue 12 item 5): bin/l4lb as typed by
      // hand (its sh line sets the tunables) and `node bin/l4lb` without any tunables.
      const start = id === 'l4lb-bin' ? 'bin' : 'bare';
      Object.assign(t, { label: start === 'bin' ? 'l4lb started as bin/l4lb' : 'l4lb, node bin/l4lb, no tunables', short: id, http: await ports.take(), bulk: await ports.take() });
      const a = await startL4lb(procs, `${id}-http`, l4lbBin, { listen: t.http, backends: web, start, ...nodePlane(l4lbBin) }, cpus.proxy);
      const b = await startL4lb(procs, `${id}-bulk`, l4lbBin, { listen: t.bulk, backends: [iperf], start, ...nodePlane(l4lbBin) }, cpus.proxy);
      t.pids.push(a.pid, b.pid);
      t.names = ['http', 'bulk'];
    } else if (id === 'l4lb-native') {
      Object.assign(t, { label: `l4lb native --threads ${threads}`, short: 'l4lb-native', http: await ports.take(), bulk: await ports.take() });
      const native = { dataPlane: 'native', threads };
      try {
        const a = await startL4lb(procs, 'l4lb-native-http', l4lbBin, { listen: t.http, backends: web, ...native }, threads === 1 ? cpus.proxy : undefined);
        t.pids.push(a.pid);
        const b = await startL4lb(procs, 'l4lb-native-bulk', l4lbBin, { listen: t.bulk, backends: [iperf], ...native }, threads === 1 ? cpus.proxy : undefined);
        t.pids.push(b.pid);
      } catch (e) {
        // The native plane (issue 14) may not be in this checkout, or not built here.
        const why = `l4lb-native skipped: \`l4lb --data-plane native --threads ${threads}\` did not start (${firstLogLine(e.message)})`;
        console.error(`perf: ${why}`);
        skipped.push(why);
        await procs.stopPids(t.pids);
        continue;
      }
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
  return { targets, skipped };
}

const TCP_TARGETS = ['direct', 'haproxy', 'haproxy-mt', 'nginx', 'l4lb'];
/** Run only when named in --targets. */
/**
 * The `l4lb` targets (and l4lb-bin/-bare) are the node plane: since dataPlane defaults to auto,
 * a plain start would run native where the addon is built, and l4lb-native is that column.
 * Checkouts from before --data-plane existed get no flag (they are node-only anyway).
 */
const nodePlaneFlags = new Map();
function nodePlane(bin) {
  if (!nodePlaneFlags.has(bin)) {
    const help = spawnSync(process.execPath, [bin, 'run', '--help'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    nodePlaneFlags.set(bin, `${help.stdout}${help.stderr}`.includes('--data-plane') ? { dataPlane: 'node' } : {});
  }
  return nodePlaneFlags.get(bin);
}

const OPTIONAL_TCP_TARGETS = ['node-floor', 'haproxy-splice', 'l4lb-native', 'l4lb-bin', 'l4lb-bare'];

async function runTcp({ opts, procs, dir, ports, cpus, l4lbBin }) {
  const ALL_WORKLOADS = ['keepalive', 'close', 'bulk-up', 'bulk-down'];
  const workloads = opts.workloads ?? ALL_WORKLOADS;
  for (const w of workloads) if (!ALL_WORKLOADS.includes(w)) throw new Error(`--workloads: unknown "${w}" for tcp (known: ${ALL_WORKLOADS.join(', ')})`);
  const ids = chooseTargets(opts, TCP_TARGETS, l4lbBin, OPTIONAL_TCP_TARGETS);

  const web = [await ports.take(), await ports.take()];
  const iperf = await ports.take();
  await startHttpBackends(procs, dir, web, cpus.backend);
  await startIperfServer(procs, iperf, cpus.backend);

  const { targets, skipped } = await startTcpTargets({ ids, opts, procs, dir, ports, cpus, l4lbBin, web, iperf });
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
  console.log(`perf: tcp, targets ${targets.map((t) => t.id).join(', ')}; ${opts.reps} rep(s) × ${workloads.length} workloads × ${opts.durationS}s${opts.pin ? '; pinned (clients CPU 0, proxies CPU 1)' : ''}`);
  console.log(`perf: warm-up ${warmS}s of keep-alive per target`);
  for (const t of targets) await runWrk(procs, { port: t.http, durationS: warmS, connections: opts.connections, cpus: cpus.client });

  for (let r = 0; r < opts.reps; r++) {
    const order = orderFor(targets, r);
    for (const w of workloads) {
      const s = spec[w];
      for (const t of order) {
        const cpu0 = cpuOf(t.pids);
        const split0 = splitOf(t.pids);
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
          if (w === 'close' && t.pids.length && res.requests > 0) {
            // Every request is a connection here: the proxy's CPU per connection, user and kernel.
            const split1 = splitOf(t.pids);
            const usPerTick = 1e6 / TICKS_PER_SECOND;
            add('close.userUs', t.id, ((split1.user - split0.user) * usPerTick) / res.requests);
            add('close.sysUs', t.id, ((split1.sys - split0.sys) * usPerTick) / res.requests);
          }
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
  if (workloads.includes('close')) {
    rows.push({ id: 'close.userUs', label: 'Connection: close · proxy user CPU per connection', unit: 'µs', better: 'lower', kind: 'us', values: samples['close.userUs'] ?? {} });
    rows.push({ id: 'close.sysUs', label: 'Connection: close · proxy kernel CPU per connection', unit: 'µs', better: 'lower', kind: 'us', values: samples['close.sysUs'] ?? {} });
  }
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
    `HAProxy: mode tcp, maxconn 4000; the headline column runs nbthread ${opts.threads}${opts.threads === 1 ? ' because l4lb is one Node thread' : ' (--threads)'}; "default threads" is informational.`,
    ids.includes('haproxy-splice') ? `HAProxy splice-auto: the same with \`option splice-auto\` (splice(2) once a flow looks bulk: HAProxy at its best for bulk), nbthread ${opts.threads}.` : undefined,
    ids.includes('l4lb-bin') ? 'l4lb started as bin/l4lb: the executable itself, as a user types it (its `#!/bin/sh` line execs node with the malloc tunables; same PID), without the unit\'s environment.' : undefined,
    ids.includes('l4lb-bare') ? 'l4lb, node bin/l4lb, no tunables: GLIBC_TUNABLES removed from the environment (a hand start before bin/l4lb set them; still what `node bin/l4lb` gets on a Node without process.execve, e.g. Node 20).' : undefined,
    targets.some((t) => t.id === 'l4lb-native') ? `l4lb native: \`--data-plane native --threads ${opts.threads}\` (issue 14), one process per listener like l4lb.` : undefined,
    workloads.includes('close') ? 'CPU per connection: utime and stime deltas of the proxy (/proc/PID/stat, 10 ms ticks) over the Connection: close run divided by the requests wrk completed (one connection each).' : undefined,
    'nginx stream: worker_processes 1, proxy_pass to the same upstreams.',
    `wrk -t1 -c${opts.connections} -d${opts.durationS}s --latency (close adds -H 'Connection: close'); iperf3 -P 1 -t ${opts.durationS} (down adds -R).`,
    ids.includes('l4lb') ? `l4lb: \`--check none --log-level warn\`, one process per listener (HTTP: 2 backends round-robin; bulk: 1 backend), with the environment of conf/l4lb.service (${Object.entries(unitEnvironment(l4lbBin)).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}); the RSS row shows the larger of the two.` : undefined,
    ids.includes('node-floor')
      ? 'node-floor: perf/floor.mjs, the least any node:net proxy does (pauseOnConnect, net.connect round-robin, `pipe` both ways; no timeouts, health, PROXY or stats); run like l4lb, one process per listener. It shows what Node\'s socket layer costs by itself on this box: node-floor/HAProxy is the share of HAProxy any node:net proxy reaches here, l4lb/node-floor how close l4lb is to that floor.'
      : undefined,
    `Peak RSS per process (VmHWM; nginx counts master+worker as one target, largest shown): ${rssDetail.join('; ')}.`,
    '"per proxy CPU-second" = rate ÷ (proxy CPU time ÷ wall time), from /proc/PID/stat: how much work the proxy does per core-second it actually got, which other load on the box disturbs much less than the raw rate.',
    l4lbNote(l4lbBin),
    ...skipped,
    opts.pin ? 'Placement: wrk/iperf3 pinned to CPU 0, proxies to CPU 1 (taskset), backends unpinned; HAProxy default-threads unpinned.' : 'Placement: no CPU pinning (load generator, proxy and backends share both cores).',
  ].filter(Boolean);

  // node-floor columns appear only when it was asked for (renderTable drops pairs not present).
  return { mode: 'tcp', columns: targets.map((t) => ({ id: t.id, label: t.label, short: t.short })), rows, goals, notes, problems, samples, ratioAgainst: RATIO_COLUMNS.tcp };
}

/** VmRSS in kB of a target's first process and its children (nginx: master + worker). */
function rssKb(pid) {
  return procPids(pid).reduce((a, p) => a + (statusKb(p, 'VmRSS') ?? 0), 0);
}

/**
 * Where a process's RSS lives, in kB: glibc's main arena (`[heap]`, native allocations: libuv
 * handles, OpenSSL, Node's C++ objects) and the other anonymous mappings (V8's heap pages,
 * mmapped malloc chunks, thread stacks). Tells "V8 has not given its pages back" from "glibc
 * does not trim" when RSS stays up after connections close.
 */
function rssParts(pid) {
  let heap = 0;
  let anon = 0;
  let inHeap = false;
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return { heap: 0, anon: 0 };
  }
  for (const line of text.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.endsWith('[heap]');
    else if (line.startsWith('Rss:') && inHeap) heap += Number(line.split(/\s+/)[1]);
    else if (line.startsWith('Anonymous:')) anon += Number(line.split(/\s+/)[1]);
  }
  return { heap, anon: anon - heap };
}

const formatParts = (p) => `[heap] ${(p.heap / 1024).toFixed(1)} MB + other anon ${(p.anon / 1024).toFixed(1)} MB`;

/** l4lb's goals for idle connections (issue 12 item 5). */
const IDLE_GOALS = { perConnectionKb: 8, afterCloseRatio: 1.2 };

async function runIdle({ opts, procs, dir, ports, cpus, l4lbBin }) {
  const ids = chooseTargets(opts, TCP_TARGETS, l4lbBin, OPTIONAL_TCP_TARGETS).filter((id) => id !== 'direct');
  const n = opts.idleConns;
  const web = [await ports.take(), await ports.take()];
  const iperf = await ports.take();
  await startHttpBackends(procs, dir, web, cpus.backend);
  await startIperfServer(procs, iperf, cpus.backend);
  // HAProxy counts every connection against maxconn; leave room above n.
  const { targets, skipped } = await startTcpTargets({ ids, opts, procs, dir, ports, cpus, l4lbBin, web, iperf, maxconn: Math.max(4000, n + 100) });
  procs.noteDescendants();
  const samples = {};
  const add = (key, target, v) => ((samples[key] ??= {})[target] ??= []).push(v);
  const problems = [];
  const curves = [];
  const parts = [];
  console.log(`perf: idle, targets ${targets.map((t) => t.id).join(', ')}; ${n} connections each, RSS watched ${opts.idleWaitS}s after they close`);
  for (const t of targets) {
    const pid = t.pids[0];
    // Warm: the proxy has served connections before the baseline (a fresh process is not the
    // steady state), but fewer than l4lb's reclaim threshold so the baseline is not a GC's.
    for (let i = 0; i < 2; i++) {
      closeAll(await openIdle(t.http, 400, { body: BODY }));
      await sleep(500);
    }
    await sleep(3000);
    const baseKb = rssKb(pid);
    const baseParts = rssParts(pid);
    const fdBase = fdCount(pid);
    const t0 = Date.now();
    let sockets;
    try {
      sockets = await openIdle(t.http, n, { body: BODY });
    } catch (e) {
      problems.push(`${t.label}: opening ${n} idle connections failed: ${e.message}`);
      console.log(`  ${t.label.padEnd(28)} FAILED ${e.message}`);
      continue;
    }
    const openS = (Date.now() - t0) / 1000;
    await sleep(3000);
    const atKb = rssKb(pid);
    const atParts = rssParts(pid);
    const fdAt = fdCount(pid);
    const lost = closedCount(sockets);
    if (lost > 0) problems.push(`${t.label}: ${lost} of ${n} idle connections were closed by the proxy or backend while held`);
    closeAll(sockets);
    const curve = await sampleFor(opts.idleWaitS * 1000, 5000, () => rssKb(pid));
    const afterKb = curve.at(-1);
    parts.push(`${t.label}: baseline ${formatParts(baseParts)}; at ${n} ${formatParts(atParts)}; after close ${formatParts(rssParts(pid))}`);
    console.log(`    ${parts.at(-1)}`);
    const perKb = perConnectionKb(baseKb, atKb, n);
    add('idle.base', t.id, baseKb / 1024);
    add('idle.at', t.id, atKb / 1024);
    add('idle.per', t.id, perKb);
    add('idle.after', t.id, afterKb / 1024);
    add('idle.ratio', t.id, afterKb / baseKb);
    curves.push(`${t.label}: ${curve.map((k) => (k / 1024).toFixed(1)).join(' → ')} MB`);
    console.log(
      `  ${t.label.padEnd(28)} baseline ${(baseKb / 1024).toFixed(1)} MB, ${n} open in ${openS.toFixed(1)}s: ${(atKb / 1024).toFixed(1)} MB (${perKb.toFixed(2)} KB/conn, fds ${fdBase}→${fdAt}), ${opts.idleWaitS}s after close ${(afterKb / 1024).toFixed(1)} MB (${(afterKb / baseKb).toFixed(2)}× baseline)`,
    );
    await sleep(1000);
  }
  const rows = [
    { id: 'idle.per', label: `RSS per idle connection ((RSS at ${n} − baseline) / ${n})`, unit: 'KB', better: 'lower', kind: 'kb', values: samples['idle.per'] ?? {} },
    { id: 'idle.base', label: 'warm baseline RSS', unit: 'MB', better: null, kind: 'mb', values: samples['idle.base'] ?? {} },
    { id: 'idle.at', label: `RSS with ${n} idle connections`, unit: 'MB', better: 'lower', kind: 'mb', values: samples['idle.at'] ?? {} },
    { id: 'idle.after', label: `RSS ${opts.idleWaitS}s after they closed`, unit: 'MB', better: 'lower', kind: 'mb', values: samples['idle.after'] ?? {} },
    { id: 'idle.ratio', label: `RSS ${opts.idleWaitS}s after close ÷ warm baseline`, unit: '×', better: 'lower', kind: 'ratio', values: samples['idle.ratio'] ?? {} },
  ];
  const verdicts = [];
  for (const id of ['l4lb', 'l4lb-native']) {
    const per = samples['idle.per']?.[id]?.[0];
    const ratio = samples['idle.ratio']?.[id]?.[0];
    if (per === undefined) continue;
    verdicts.push(
      `${id}: ${per.toFixed(2)} KB per idle connection (goal ≤ ${IDLE_GOALS.perConnectionKb} KB: ${per <= IDLE_GOALS.perConnectionKb ? 'met' : 'not met'}); RSS ${ratio.toFixed(2)}× the warm baseline ${opts.idleWaitS}s after close (goal ≤ ${IDLE_GOALS.afterCloseRatio.toFixed(2)}×${opts.idleWaitS < 60 ? ', measured sooner than the goal\'s minute' : ''}: ${ratio <= IDLE_GOALS.afterCloseRatio ? 'met' : 'not met'}).`,
    );
  }
  const notes = [
    `Each of ${n} connections comes from its own 127.0.x.1 source address (20 in turn), sends one \`GET /\` (keep-alive) through the proxy to the nginx backend, reads the 29-byte body, then stays open and silent. RSS is VmRSS of the process that holds the connections (nginx: master + worker; l4lb: the HTTP listener's process), read 3 s after the last one opened.`,
    'Warm baseline: VmRSS 3 s after two rounds of 400 such connections opened and closed (fewer than l4lb\'s 1,000-connection reclaim threshold, so no reclaim collection precedes it).',
    `After close: every client socket destroyed at once; VmRSS sampled every 5 s for ${opts.idleWaitS}s: ${curves.join('; ')}.`,
    `Where RSS lives (smaps): ${parts.join('; ')}.`,
    'HAProxy runs with maxconn above the connection count here (the other workloads use 4000).',
    ...verdicts,
    ...skipped,
  ];
  return { mode: 'idle', columns: targets.map((t) => ({ id: t.id, label: t.label, short: t.short })), rows, goals: [], notes, problems, samples, ratioAgainst: RATIO_COLUMNS.tcp };
}

/**
 * The soak (issue 12 item 6; not in CI): l4lb from a config file with a TCP and a UDP service,
 * under keep-alive HTTP, connection churn and UDP ping-pong at once, a SIGHUP reload every 30 s
 * (the file alternates between two balance algorithms), RSS and open fds sampled every 5 s.
 * Any error fails the run (exit 1): a wrk socket error or non-2xx, a client that fails, l4lb
 * exiting or changing PID, an error line in its log.
 */
async function runSoak({ opts, procs, dir, ports, cpus, l4lbBin }) {
  if (!l4lbBin) throw new Error(l4lbNote(l4lbBin));
  const totalS = opts.durationSet ? opts.durationS : opts.soakS;
  const windowS = Math.min(30, totalS);
  const web = [await ports.take(), await ports.take()];
  const udpBack = await ports.take();
  const httpPort = await ports.take();
  const udpPort = await ports.take();
  await startHttpBackends(procs, dir, web, cpus.backend);
  await startSockperfServer(procs, 'backend-sockperf', udpBack, cpus.backend);
  const file = join(dir, 'l4lb-soak.yaml');
  const writeConfig = (balance) =>
    writeFileSync(
      file,
      [
        'services:',
        '  - name: web',
        `    listen: ["127.0.0.1:${httpPort}"]`,
        `    balance: ${balance}`,
        '    health: {type: none}',
        `    backends: [${web.map((p) => `"127.0.0.1:${p}"`).join(', ')}]`,
        '  - name: dgram',
        '    protocol: udp',
        `    listen: ["127.0.0.1:${udpPort}"]`,
        '    health: {type: none}',
        `    backends: ["127.0.0.1:${udpBack}"]`,
        'log:',
        '  level: warn',
        '  format: json',
        '',
      ].join('\n'),
    );
  writeConfig('round-robin');
  const l4lb = procs.start('l4lb-soak', process.execPath, [l4lbBin, '-c', file], { cpus: cpus.proxy, env: unitEnvironment(l4lbBin) });
  await waitListening(l4lb, [httpPort], { timeoutMs: 15_000 });
  await waitListening(l4lb, [udpPort], { proto: 'udp', timeoutMs: 15_000 });
  const pid = l4lb.pid;
  const problems = [];
  const samples = [];
  const sample = () => {
    const s = { atS: Math.round((Date.now() - start) / 1000), rssMb: (statusKb(pid, 'VmRSS') ?? NaN) / 1024, fds: fdCount(pid) };
    samples.push(s);
    return s;
  };
  const start = Date.now();
  sample();
  const totals = { requests: 0, connections: 0, udpRoundTrips: 0, udpLost: 0, reloads: 0, windows: 0 };
  console.log(`perf: soak ${totalS}s: keep-alive (wrk -c8), Connection: close churn (wrk -c4), UDP ping-pong (sockperf --mps 2000), SIGHUP every ${windowS}s; RSS and fds every 5s`);
  let balance = 'round-robin';
  while ((Date.now() - start) / 1000 < totalS - 1) {
    const left = Math.max(1, Math.round(totalS - (Date.now() - start) / 1000));
    const d = Math.min(windowS, left);
    const sampler = sampleFor(d * 1000, 5000, sample);
    const [keep, churn, udp] = await Promise.all([
      runWrk(procs, { port: httpPort, durationS: d, connections: 8, cpus: cpus.client }),
      runWrk(procs, { port: httpPort, durationS: d, connections: 4, headers: ['Connection: close'], cpus: cpus.client }),
      runSockperf(procs, 'ping-pong', { port: udpPort, durationS: d, msgSize: 64, mps: 2000, cpus: cpus.client }),
    ]);
    await sampler;
    totals.windows++;
    const at = `${Math.round((Date.now() - start) / 1000)}s`;
    for (const [name, r] of [['keep-alive', keep], ['churn', churn]]) {
      if (r.failed) problems.push(`${at} ${name}: ${r.failed}`);
      else if (r.errors > 0) problems.push(`${at} ${name}: ${r.errorDetail}`);
    }
    if (!keep.failed) totals.requests += keep.requests;
    if (!churn.failed) totals.connections += churn.requests;
    if (udp.failed) problems.push(`${at} udp: ${udp.failed}`);
    else {
      totals.udpRoundTrips += udp.received;
      totals.udpLost += udp.sent - udp.received;
    }
    if (l4lb.entry.done) {
      problems.push(`${at}: l4lb exited; log ${l4lb.log}:\n${tail(l4lb.log)}`);
      break;
    }
    if ((Date.now() - start) / 1000 < totalS - 1) {
      balance = balance === 'round-robin' ? 'least-conn' : 'round-robin';
      writeConfig(balance);
      procs.signal(pid, 'SIGHUP');
      totals.reloads++;
    }
    const last = samples.at(-1);
    console.log(`  ${at.padStart(5)}  ${keep.requests ?? 0} keep-alive requests, ${churn.requests ?? 0} connections, ${udp.received ?? 0} UDP round trips (${udp.failed ? 'failed' : udp.sent - udp.received} lost); RSS ${last.rssMb.toFixed(1)} MB, fds ${last.fds}${totals.reloads ? `; reload ${totals.reloads} (${balance})` : ''}`);
  }
  await sleep(1000);
  sample();
  const logText = readFileSync(l4lb.log, 'utf8');
  const errorLines = logText.split('\n').filter((l) => /"level":(50|60)/.test(l));
  for (const l of errorLines.slice(0, 5)) problems.push(`l4lb logged: ${l.slice(0, 300)}`);
  if (errorLines.length > 5) problems.push(`… and ${errorLines.length - 5} more error lines`);
  if (!l4lb.entry.done && !samples.every((x) => Number.isFinite(x.fds))) problems.push('l4lb PID vanished during the run');
  const warnLines = logText.split('\n').filter((l) => /"level":40/.test(l)).length;
  const rss = samples.map((x) => x.rssMb).filter(Number.isFinite);
  const fds = samples.map((x) => x.fds).filter(Number.isFinite);
  const one = (v) => ({ l4lb: [v] });
  const rows = [
    { id: 'soak.requests', label: 'keep-alive requests served', unit: 'requests', better: null, kind: 'int', values: one(totals.requests) },
    { id: 'soak.connections', label: 'Connection: close connections served', unit: 'connections', better: null, kind: 'int', values: one(totals.connections) },
    { id: 'soak.udp', label: 'UDP round trips', unit: 'round trips', better: null, kind: 'int', values: one(totals.udpRoundTrips) },
    { id: 'soak.udpLost', label: 'UDP datagrams without a reply', unit: 'datagrams', better: null, kind: 'int', values: one(totals.udpLost) },
    { id: 'soak.reloads', label: 'SIGHUP reloads', unit: 'reloads', better: null, kind: 'int', values: one(totals.reloads) },
    { id: 'soak.errors', label: 'errors (wrk socket errors and non-2xx, failed clients, l4lb error lines, exits)', unit: 'errors', better: null, kind: 'int', values: one(problems.length) },
    { id: 'soak.rssStart', label: 'RSS at start', unit: 'MB', better: null, kind: 'mb', values: one(rss[0]) },
    { id: 'soak.rssMax', label: 'RSS, largest sample', unit: 'MB', better: null, kind: 'mb', values: one(Math.max(...rss)) },
    { id: 'soak.rssEnd', label: 'RSS at end', unit: 'MB', better: null, kind: 'mb', values: one(rss.at(-1)) },
    { id: 'soak.fdsStart', label: 'open fds at start', unit: 'fds', better: null, kind: 'int', values: one(fds[0]) },
    { id: 'soak.fdsMax', label: 'open fds, largest sample', unit: 'fds', better: null, kind: 'int', values: one(Math.max(...fds)) },
    { id: 'soak.fdsEnd', label: 'open fds at end (load stopped)', unit: 'fds', better: null, kind: 'int', values: one(fds.at(-1)) },
  ];
  const notes = [
    `l4lb \`-c FILE\` (services web: TCP round-robin over the two nginx backends, dgram: UDP to one sockperf server; no health checks; log level warn, JSON), with the environment of conf/l4lb.service; the file's web balance alternates round-robin / least-conn at each SIGHUP.`,
    `Load in each ${windowS}s window, all at once: wrk -t1 -c8 keep-alive, wrk -t1 -c4 -H 'Connection: close', sockperf ping-pong 64 B at 2000 msg/s.`,
    `RSS/fds every 5 s: ${samples.map((x) => `${x.atS}s ${x.rssMb.toFixed(0)} MB/${x.fds}`).join(', ')}.`,
    `UDP datagrams without a reply are reported, not counted as errors (UDP may drop on a loaded box); warn lines in l4lb's log: ${warnLines}.`,
  ];
  const report = { mode: 'soak', columns: [{ id: 'l4lb', label: 'l4lb', short: 'l4lb' }], rows, goals: [], notes, problems, samples: { soak: samples, totals }, ratioAgainst: [] };
  report.failed = problems.length > 0;
  return report;
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

  // The ratio table as a chart beside RESULTS.md (perf/chart-MODE.svg), or in perf/out/ when not recording.
  const reference = { tcp: 'haproxy', idle: 'haproxy', udp: 'nginx' }[report.mode];
  let chartFile;
  if (reference && report.columns.some((c) => c.id === reference)) {
    chartFile = join(opts.results ? PERF_DIR : outDir, `chart-${report.mode}.svg`);
    const title = `l4lb perf · ${report.mode} · ${when} · ratio to ${report.columns.find((c) => c.id === reference).label}`;
    writeFileSync(chartFile, renderChart(report.rows, report.columns, { reference, title }));
    console.log(`perf: chart in ${chartFile}`);
  }

  if (!opts.results) {
    console.log('perf: RESULTS.md not updated (quick run or --no-results; pass --results to record it)');
    return;
  }
  const shape = {
    idle: `${opts.idleConns} idle connections, RSS watched ${opts.idleWaitS}s after close`,
    soak: `${opts.durationSet ? opts.durationS : opts.soakS}s soak`,
  }[report.mode] ?? `${opts.durationS}s × ${opts.reps} rep${opts.reps > 1 ? 's' : ''}`;
  const section = [
    `## ${when} · ${report.mode} · ${shape}${opts.threads > 1 ? ` · --threads ${opts.threads}` : ''}${opts.pin ? ' · pinned' : ''}${opts.quick ? ' (quick)' : ''}`,
    '',
    `Command: \`${command}\` (as \`npm run bench${process.argv.length > 2 ? ` -- ${command.slice('perf/run '.length)}` : ''}\`)`,
    '',
    `Machine: ${m.nproc} CPUs (${m.cpu}), Linux ${m.kernel}; node ${m.node}; ${m.haproxy}; ${m.nginx}; ${report.mode === 'udp' ? `sockperf ${m.sockperf}` : report.mode === 'soak' ? `${m.wrk}; sockperf ${m.sockperf}` : `${m.wrk}; ${m.iperf3}`}. Checkout: ${m.commit}.`,
    '',
    `Load average (1/5/15 min) at start ${report.load.start.join(' ')}, at end ${report.load.end.join(' ')}: the harness's own processes count too (a run keeps about 2 busy), more than that is other work on the box.`,
    '',
    table,
    '',
    ...(targets ? [`Targets (from the issue, l4lb against HAProxy nbthread ${opts.threads}):`, '', targets.text, ''] : []),
    ...(chartFile && opts.results ? [`Chart: [perf/chart-${report.mode}.svg](chart-${report.mode}.svg) (this run; the file is replaced by the next ${report.mode} run).`, ''] : []),
    ...report.notes.map((n) => `- ${n}`),
    ...(report.problems.length ? ['', 'Problems seen during the run:', ...report.problems.map((p) => `- ${p}`)] : []),
    '',
  ].join('\n');
  appendResults(join(PERF_DIR, 'RESULTS.md'), section);
  console.log('perf: added a section to perf/RESULTS.md');
}

await main();
