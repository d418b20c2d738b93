// Backends (nginx http, iperf3 server, sockperf server) and the targets under test (direct,
// HAProxy, nginx stream, l4lb, and on request the node-floor proxy), each started from a config
// written into the run's temp dir.
import { writeFileSync, mkdirSync, chmodSync, existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitListening } from './procs.mjs';

export const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
export const BODY = 'hello from l4lb perf backend\n';

/** Lines nginx needs to stay out of /var and /run when run unprivileged or beside a system nginx. */
function nginxHead(dir, name, workers) {
  return [
    `worker_processes ${workers};`,
    'daemon off;',
    'master_process on;',
    `pid ${join(dir, `${name}.pid`)};`,
    `error_log ${join(dir, `${name}.error.log`)} warn;`,
    // room for the idle workload's 9,000 connections (the box's hard limit is 20,000)
    'worker_rlimit_nofile 20000;',
    'events { worker_connections 19000; }',
  ];
}

function startNginx(procs, dir, name, conf, cpus) {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, conf);
  return procs.start(name, 'nginx', ['-p', dir, '-c', file, '-e', join(dir, `${name}.error.log`)], { cpus });
}

/**
 * One nginx process, worker_processes 1, serving a small static file on two ports (the two
 * upstream backends of the HTTP workloads). keepalive_requests is raised so wrk's keep-alive
 * connections are not recycled every 1000 requests (nginx's default).
 */
export async function startHttpBackends(procs, dir, ports, cpus, { keepAliveS = 75 } = {}) {
  const www = join(dir, 'www');
  const tmp = join(dir, 'nginx-tmp');
  mkdirSync(www, { recursive: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(www, 'index.html'), BODY);
  // nginx workers run as an unprivileged user when we are root: let them read the docroot.
  for (const d of [dir, www]) chmodSync(d, 0o755);
  chmodSync(join(www, 'index.html'), 0o644);
  const conf = [
    ...nginxHead(dir, 'backend-http', 1),
    'http {',
    '  access_log off;',
    '  default_type text/plain;',
    '  keepalive_requests 10000000;',
    // the idle workload holds connections open after one request (1h: never the one to close)
    `  keepalive_timeout ${keepAliveS}s;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(tmp, t)};`),
    '  server {',
    ...ports.map((p) => `    listen 127.0.0.1:${p} backlog=4096;`),
    `    root ${www};`,
    '    location / { try_files /index.html =404; }',
    '  }',
    '}',
    '',
  ].join('\n');
  const s = startNginx(procs, dir, 'backend-http', conf, cpus);
  await waitListening(s, ports);
  return s;
}

/** iperf3 serves one test at a time, so every bulk path ends at this single server. */
export async function startIperfServer(procs, port, cpus) {
  const s = procs.start('backend-iperf3', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port)], { cpus });
  await waitListening(s, [port]);
  return s;
}

export async function startSockperfServer(procs, name, port, cpus) {
  const s = procs.start(name, 'sockperf', ['server', '-i', '127.0.0.1', '-p', String(port)], { cpus });
  await waitListening(s, [port], { proto: 'udp' });
  return s;
}

/**
 * HAProxy in mode tcp. threads: 1 for the headline comparison (l4lb is one Node thread);
 * undefined leaves HAProxy's default (one thread per CPU it may run on).
 */
export async function startHaproxy(procs, dir, name, { httpPort, bulkPort, backends, iperf, threads, cpus, splice = false, maxconn = 4000 }) {
  const cfg = [
    'global',
    `  maxconn ${maxconn}`,
    // HAProxy reserves two fds per pipe (maxpipes defaults to maxconn/4) and will not start when
    // 2 × maxconn + 2 × maxpipes passes the open-file limit (20,000 here) at 9,100 connections.
    ...(splice ? [`  maxpipes ${Math.max(64, Math.min(Math.floor(maxconn / 4), Math.floor((19_900 - 2 * maxconn) / 2)))}`] : []),
    ...(threads ? [`  nbthread ${threads}`] : []),
    '',
    'defaults',
    '  mode tcp',
    `  maxconn ${maxconn}`,
    // splice-auto: HAProxy moves bytes with splice(2) when it sees a flow is bulk (its best for bulk).
    ...(splice ? ['  option splice-auto'] : []),
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '',
    'frontend http',
    `  bind 127.0.0.1:${httpPort}`,
    '  default_backend web',
    '',
    'backend web',
    '  balance roundrobin',
    ...backends.map((p, i) => `  server web${i + 1} 127.0.0.1:${p}`),
    '',
    'frontend bulk',
    `  bind 127.0.0.1:${bulkPort}`,
    '  default_backend iperf',
    '',
    'backend iperf',
    `  server iperf1 127.0.0.1:${iperf}`,
    '',
  ].join('\n');
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, cfg);
  const s = procs.start(name, 'haproxy', ['-f', file, '-db'], { cpus });
  await waitListening(s, [httpPort, bulkPort]);
  return s;
}

/** nginx stream proxy, worker_processes 1 (same single-core footing as l4lb and HAProxy nbthread 1). */
export async function startNginxStream(procs, dir, name, { httpPort, bulkPort, backends, iperf, udp, cpus }) {
  const conf = [
    `load_module ${STREAM_MODULE};`,
    ...nginxHead(dir, name, 1),
    'stream {',
    ...(backends ? ['  upstream web {', ...backends.map((p) => `    server 127.0.0.1:${p};`), '  }'] : []),
    ...(httpPort ? [`  server { listen 127.0.0.1:${httpPort} backlog=4096; proxy_pass web; }`] : []),
    ...(bulkPort ? [`  server { listen 127.0.0.1:${bulkPort}; proxy_pass 127.0.0.1:${iperf}; }`] : []),
    ...(udp
      ? [
          '  upstream dgram {',
          ...udp.backends.map((p) => `    server 127.0.0.1:${p};`),
          '  }',
          `  server { listen 127.0.0.1:${udp.port} udp; proxy_pass dgram; proxy_timeout 30s; }`,
        ]
      : []),
    '}',
    '',
  ].join('\n');
  const s = startNginx(procs, dir, name, conf, cpus);
  if (httpPort) await waitListening(s, [httpPort, bulkPort].filter(Boolean));
  if (udp) await waitListening(s, [udp.port], { proto: 'udp' });
  return s;
}

/**
 * The l4lb CLI, run by this same node binary. One process per listener. dataPlane/threads: the
 * native plane (issue 14), `--data-plane native --threads N`.
 */
export function l4lbArgs(bin, { listen, backends, balance = 'round-robin', protocol, dataPlane, threads }) {
  return [
    bin,
    ...(dataPlane ? ['--data-plane', dataPlane] : []),
    ...(threads ? ['--threads', String(threads)] : []),
    '-l',
    `127.0.0.1:${listen}`,
    ...backends.flatMap((p) => ['-b', `127.0.0.1:${p}`]),
    '--balance',
    balance,
    ...(protocol ? ['--protocol', protocol] : []),
    // Like the HAProxy and nginx configs here: no active health checks (they would also
    // open stray connections to the iperf3 server, which serves one test at a time).
    '--check',
    'none',
    '--log-level',
    'warn',
  ];
}

/**
 * The `Environment=` lines of the l4lb checkout's conf/l4lb.service (glibc malloc tunables):
 * the benchmark runs l4lb as the systemd unit does. {} when there is no unit file.
 */
export function unitEnvironment(bin) {
  let text;
  try {
    text = readFileSync(join(dirname(bin), '..', 'conf', 'l4lb.service'), 'utf8');
  } catch {
    return {};
  }
  return parseUnitEnvironment(text);
}

export function parseUnitEnvironment(text) {
  const env = {};
  for (const m of text.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$/gm)) env[m[1]] = m[2];
  return env;
}

/**
 * start: 'unit' (default) runs `node bin/l4lb` with conf/l4lb.service's environment; 'bin' runs
 * bin/l4lb itself as a user types it (its `#!/bin/sh` line sets the malloc tunables), without
 * the unit's environment; 'bare' runs `node bin/l4lb` with no GLIBC_TUNABLES at all (a hand
 * start before bin/l4lb set them, and still on a Node without process.execve).
 */
export async function startL4lb(procs, name, bin, opts, cpus) {
  const start = opts.start ?? 'unit';
  const [cmd, args] = start === 'bin' ? [bin, l4lbArgs(bin, opts).slice(1)] : [process.execPath, l4lbArgs(bin, opts)];
  const env = start === 'unit' ? unitEnvironment(bin) : { GLIBC_TUNABLES: undefined };
  const s = procs.start(name, cmd, args, { cpus, env });
  await waitListening(s, [opts.listen], { proto: opts.protocol === 'udp' ? 'udp' : 'tcp', timeoutMs: 15_000 });
  return s;
}

/**
 * perf/floor.mjs: the minimal node:net proxy (Node's own floor), run like l4lb, one process per
 * listener; with protocol 'udp' the minimal node:dgram session proxy.
 */
export const FLOOR = join(dirname(fileURLToPath(import.meta.url)), '..', 'floor.mjs');

export function floorArgs({ listen, backends, protocol }) {
  return [FLOOR, ...(protocol ? ['--protocol', protocol] : []), '-l', `127.0.0.1:${listen}`, ...backends.flatMap((p) => ['-b', `127.0.0.1:${p}`])];
}

export async function startNodeFloor(procs, name, opts, cpus) {
  const s = procs.start(name, process.execPath, floorArgs(opts), { cpus });
  await waitListening(s, [opts.listen], { proto: opts.protocol === 'udp' ? 'udp' : 'tcp', timeoutMs: 15_000 });
  return s;
}

/** bin/l4lb of this checkout, if it exists and has been built (it imports dist/lib/cli). */
export function l4lbAvailable(repoRoot) {
  const bin = join(repoRoot, 'bin', 'l4lb');
  if (!existsSync(bin)) return undefined;
  if (!existsSync(join(repoRoot, 'dist', 'lib', 'cli', 'index.js'))) {
    console.error('perf: bin/l4lb is here but dist/ is not built: run `npm install` (or `npm run build`) first');
    return undefined;
  }
  return bin;
}

/** The line of a start-up failure worth showing: l4lb's own error line from the log tail, else the first. */
export function firstLogLine(message) {
  const lines = String(message).split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.find((l) => /^l4lb: |error|unknown option|refus|not built|native/i.test(l) && !/^\S+ exited during start-up/.test(l)) ?? lines[0] ?? 'no output').slice(0, 200);
}

