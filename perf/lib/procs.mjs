// Process bookkeeping for the benchmark: every process the harness starts is recorded here by
// PID, and only those PIDs (plus the workers they forked, e.g. nginx's) are ever signalled.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';

/** Children (recursively) of a PID, from /proc/PID/task/TID/children. */
export function descendants(pid) {
  const out = [];
  const walk = (p) => {
    let tids = [];
    try {
      tids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      return;
    }
    for (const t of tids) {
      const c = Number(t);
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

export function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** utime+stime of a PID in clock ticks (USER_HZ, 100 on Linux). */
export function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}
export const TICKS_PER_SECOND = 100;

/** utime and stime of a PID separately, in clock ticks. */
export function cpuSplit(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]), sys: Number(fields[12]) };
  } catch {
    return { user: 0, sys: 0 };
  }
}

/** Open file descriptors of a PID (entries of /proc/PID/fd), NaN when gone. */
export function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** A /proc/PID/status field in kB (VmHWM = peak resident set size). */
export function statusKb(pid, field) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export class ProcessSet {
  #dir;
  #procs = new Map(); // pid -> { name, child, log, exited }
  #extraPids = new Set(); // forked workers seen while running
  #stopping = false; // set once shutdown begins: nothing new is started after that

  constructor(dir) {
    this.#dir = dir;
  }

  /**
   * Start a long-running process with stdout+stderr to DIR/NAME.log.
   * cpus: optional taskset CPU list ("1"); taskset execs, so the PID stays the same.
   */
  start(name, cmd, args, { cpus, env } = {}) {
    if (this.#stopping) throw new Error(`not starting ${name}: shutting down`);
    const log = join(this.#dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const [file, argv] = cpus !== undefined ? ['taskset', ['-c', String(cpus), cmd, ...args]] : [cmd, args];
    const child = spawn(file, argv, { stdio: ['ignore', fd, fd], env: env === undefined ? process.env : { ...process.env, ...env } });
    closeSync(fd);
    if (child.pid === undefined) throw new Error(`could not start ${name} (${cmd})`);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const entry = { name, child, log, exited, done: false };
    exited.then(() => {
      entry.done = true;
    });
    child.on('error', () => {});
    this.#procs.set(child.pid, entry);
    return { pid: child.pid, log, exited, entry };
  }

  /** Run a client to completion, collecting its output (it is tracked while it runs). */
  run(name, cmd, args, { cpus, timeoutMs = 120_000 } = {}) {
    const [file, argv] = cpus !== undefined ? ['taskset', ['-c', String(cpus), cmd, ...args]] : [cmd, args];
    if (this.#stopping) return Promise.resolve({ code: -1, stdout: '', stderr: 'shutting down' });
    return new Promise((resolve) => {
      const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
      const pid = child.pid;
      if (pid !== undefined) this.#procs.set(pid, { name, child, log: null, exited: null, done: false });
      const timer = setTimeout(() => {
        stderr += `\n[bench] ${name} timed out after ${timeoutMs} ms, killed`;
        if (pid !== undefined) signal(pid, 'SIGKILL');
      }, timeoutMs);
      const finish = (code) => {
        clearTimeout(timer);
        if (pid !== undefined) this.#procs.delete(pid);
        resolve({ code, stdout, stderr });
      };
      child.on('error', (e) => {
        stderr += String(e);
        finish(-1);
      });
      child.on('close', (code) => finish(code));
    });
  }

  /** Remember the forked workers of our processes so they can be killed if the master dies. */
  noteDescendants() {
    for (const pid of this.#procs.keys()) for (const d of descendants(pid)) this.#extraPids.add(d);
  }

  /** Stop some of our processes (SIGTERM, then SIGKILL after graceMs); others keep running. */
  async stopPids(pids, graceMs = 3000) {
    const entries = pids.map((p) => [p, this.#procs.get(p)]).filter(([, e]) => e && !e.done);
    for (const [pid] of entries) signal(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && entries.some(([pid, e]) => !e.done && isAlive(pid))) await sleep(50);
    for (const [pid, e] of entries) if (!e.done) signal(pid, 'SIGKILL');
    for (const [pid] of entries) this.#procs.delete(pid);
  }

  /** Signal one of our processes (SIGHUP for the soak's reloads); false when it is not ours or gone. */
  signal(pid, sig) {
    const e = this.#procs.get(pid);
    if (!e || e.done) return false;
    signal(pid, sig);
    return true;
  }

  /** Graceful stop: SIGTERM our PIDs, wait up to graceMs, then SIGKILL what is left. */
  async stopAll(graceMs = 3000) {
    this.#stopping = true;
    this.noteDescendants();
    const entries = [...this.#procs.entries()].filter(([, e]) => !e.done);
    for (const [pid] of entries) signal(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && entries.some(([pid, e]) => !e.done && isAlive(pid))) await sleep(50);
    this.killAllSync();
  }

  /** Last resort, synchronous (usable from process.on('exit')). */
  killAllSync() {
    this.#stopping = true;
    this.noteDescendants();
    for (const [pid, e] of this.#procs) if (!e.done) signal(pid, 'SIGKILL');
    for (const pid of this.#extraPids) signal(pid, 'SIGKILL');
    this.#procs.clear();
    this.#extraPids.clear();
  }
}

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

// ---- ports ---------------------------------------------------------------------------------

function ephemeralLow() {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 32768;
  }
}

function canBind(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const udp = dgram.createSocket('udp4');
      udp.once('error', () => srv.close(() => resolve(false)));
      udp.bind({ address: '127.0.0.1', port, exclusive: true }, () => {
        udp.close(() => srv.close(() => resolve(true)));
      });
    });
  });
}

/**
 * Free ports below the ephemeral range (so client sockets the kernel numbers during the run
 * never collide with them), checked free for both TCP and UDP on 127.0.0.1.
 */
export class PortPool {
  #used = new Set();
  #next;
  #high;
  constructor() {
    this.#high = Math.max(ephemeralLow() - 1, 20_000);
    const low = Math.min(20_000, this.#high - 2000);
    this.#next = low + Math.floor(Math.random() * (this.#high - low - 1000));
  }
  async take() {
    for (let i = 0; i < 5000; i++) {
      const p = this.#next++;
      if (this.#next > this.#high) this.#next = 10_000;
      if (this.#used.has(p)) continue;
      if (await canBind(p)) {
        this.#used.add(p);
        return p;
      }
    }
    throw new Error('no free port found below the ephemeral range');
  }
}

// ---- readiness -----------------------------------------------------------------------------

const LOOPBACK_HEX = '0100007F';

/** True when something listens on 127.0.0.1:port (TCP LISTEN / UDP bound), read from /proc/net. */
export function isListening(port, proto = 'tcp') {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const files = proto === 'tcp' ? ['/proc/net/tcp'] : ['/proc/net/udp'];
  const wantState = proto === 'tcp' ? '0A' : '07';
  for (const f of files) {
    if (!existsSync(f)) continue;
    const lines = readFileSync(f, 'utf8').split('\n').slice(1);
    for (const line of lines) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4) continue;
      const [addr, p] = cols[1].split(':');
      if (p === hexPort && (addr === LOOPBACK_HEX || addr === '00000000') && cols[3] === wantState) return true;
    }
  }
  return false;
}

/** Wait until the process listens on every port, without connecting (iperf3 dislikes probes). */
export async function waitListening(started, ports, { proto = 'tcp', timeoutMs = 10_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (started.entry.done) {
      throw new Error(`${started.entry.name} exited during start-up; log ${started.log}:\n${tail(started.log)}`);
    }
    if (ports.every((p) => isListening(p, proto))) return;
    if (Date.now() > deadline) {
      throw new Error(`${started.entry.name} not listening on ${proto} ${ports.join(',')} after ${timeoutMs} ms; log ${started.log}:\n${tail(started.log)}`);
    }
    await sleep(50);
  }
}

export function tail(file, lines = 15) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
