/**
 * Test helpers: real processes and sockets on loopback, every wait bounded, everything a test
 * starts is registered for cleanup by the test that started it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import net, { type AddressInfo, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const BIN = path.join(ROOT, 'bin', 'l4lb')

/**
 * The environment for child processes. tap's processinfo wraps spawn() and injects its loader
 * through NODE_OPTIONS, which makes Node load the extensionless bin/l4lb as CommonJS; children
 * are therefore started through `env -u NODE_OPTIONS` (see nodeCommand) and get a clean env.
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra }
  delete env.NODE_OPTIONS
  for (const k of Object.keys(env)) if (k.startsWith('TAP') || k.startsWith('_TAPJS')) delete env[k]
  return env
}

/** Whether this machine has an IPv6 loopback (::1) to listen on. */
export function canUseIPv6(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(0, '::1', () => s.close(() => resolve(true)))
  })
}

/** A fresh directory under the system's temp dir, removed when the test ends. */
export function tempDir(t: { teardown(fn: () => unknown): void }, prefix = 'l4lb-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Rejects with a message naming what we were waiting for, so a hang becomes a clear failure. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

type Falsy = false | 0 | '' | null | undefined

/**
 * Polls `check` every `stepMs` until it returns a truthy value, and resolves with it; rejects
 * naming `what` after `timeoutMs`. The one polling wait of the tests: wait for an event where
 * there is one (`within`), poll only state that has none.
 */
export async function eventually<T>(what: string, check: () => T | Falsy | Promise<T | Falsy>, timeoutMs = 5000, stepMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`)
    await sleep(stepMs)
  }
}

/**
 * A port free right now on `host`, for peers (HAProxy, nginx, PostgreSQL) that cannot listen on
 * port 0 and report it. Another process can take it before the peer binds: callers that start
 * many peers at once retry on a bind error (TestPostgres does).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer()
  const port = await listen(server, host)
  await closeServer(server)
  return port
}

export type LogLine = Record<string, unknown> & { msg?: string; level?: number }

export interface L4lbProcess {
  readonly proc: ChildProcess
  readonly logs: LogLine[]
  /** Listening ports in listen order (from the `listening` log line). */
  readonly ports: number[]
  /** UDP listening ports in listen order (from the `listening` line with `proto: 'udp'`). */
  readonly udpPorts: number[]
  readonly stderr: () => string
  waitForLog(what: string, match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>
  exited: Promise<number | null>
}

export interface SpawnOptions {
  /** Wait for the `listening` line (default true). */
  waitListening?: boolean
  env?: NodeJS.ProcessEnv
  /** Run through this command prefix (e.g. ['prlimit', '--nofile=64']). */
  prefix?: string[]
}

/** argv to run a Node script without tap's injected hooks. */
export function nodeCommand(...args: string[]): string[] {
  return ['env', '-u', 'NODE_OPTIONS', process.execPath, ...args]
}

/** Starts bin/l4lb with JSON logs on stdout; use `-l 127.0.0.1:0` and read `ports`. */
export async function spawnL4lb(args: string[], options: SpawnOptions = {}): Promise<L4lbProcess> {
  const argv = [...(options.prefix ?? []), ...nodeCommand(BIN, ...args)]
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(options.env) })
  const logs: LogLine[] = []
  const ports: number[] = []
  const udpPorts: number[] = []
  let stderr = ''
  let buffered = ''
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = []
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      let line: LogLine
      try {
        line = JSON.parse(text) as LogLine
      } catch {
        continue
      }
      logs.push(line)
      if (line.msg === 'listening' && Array.isArray(line.listen)) {
        const into = line.proto === 'udp' ? udpPorts : ports
        for (const l of line.listen as string[]) into.push(Number(l.slice(l.lastIndexOf(':') + 1)))
      }
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.match(line)) waiters.splice(i, 1)[0]!.resolve(line)
      }
    }
  })
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const handle: L4lbProcess = {
    proc,
    logs,
    ports,
    udpPorts,
    stderr: () => stderr,
    waitForLog(what, match, timeoutMs = 5000) {
      const found = logs.find(match)
      if (found) return Promise.resolve(found)
      return within(timeoutMs, `log line: ${what}`, new Promise<LogLine>((resolve) => waiters.push({ match, resolve })))
    },
    stop: (graceMs = 3000) => stopChild(proc, exited, graceMs),
    exited,
  }
  if (options.waitListening !== false) {
    try {
      await within(10_000, 'l4lb to listen', Promise.race([
        handle.waitForLog('listening', (l) => l.msg === 'listening', 10_000),
        exited.then((code) => Promise.reject(new Error(`l4lb exited with ${code}: ${stderr}`))),
      ]))
    } catch (err) {
      // Never leave a process behind when the test that wanted it fails.
      proc.kill('SIGKILL')
      throw err
    }
  }
  return handle
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (at once if already gone). */
export async function stopChild<T>(proc: ChildProcess, exited: Promise<T>, graceMs = 3000): Promise<T | number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
  const result = await exited
  clearTimeout(timer)
  return result
}

/**
 * Starts a peer program (HAProxy, nginx) for an interop test, collects its stdout and stderr
 * for error messages, and stops it when the test ends.
 */
export function spawnPeer(t: { teardown(fn: () => unknown): void }, cmd: string, args: string[]): { proc: ChildProcess; output: () => string } {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => (output += c))
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c))
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  t.teardown(() => stopChild(proc, exited))
  return { proc, output: () => output }
}

/** Runs bin/l4lb to completion (for flag errors); bounded. */
export async function runL4lb(args: string[], timeoutMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, ...rest] = nodeCommand(BIN, ...args)
  const proc = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() })
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

export async function listen(server: Server, host = '127.0.0.1', port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.removeListener('error', reject)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
  })
}

/** A TCP backend that greets with its name then echoes; tracks its sockets for cleanup. */
export class EchoBackend {
  readonly server: Server
  readonly sockets = new Set<Socket>()
  accepted = 0
  port = 0
  constructor(readonly name: string, onSocket?: (socket: Socket, backend: EchoBackend) => void) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => {
      this.accepted++
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
      socket.on('error', () => socket.destroy())
      if (onSocket) return onSocket(socket, this)
      socket.write(`${this.name}\n`)
      socket.pipe(socket)
    })
  }

  async start(host = '127.0.0.1', port = 0): Promise<this> {
    this.port = await listen(this.server, host, port)
    return this
  }

  get address(): string {
    const a = this.server.address() as AddressInfo
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await closeServer(this.server)
  }
}

/**
 * A backend that is slow to accept, on loopback: a child process listens (backlog 1) and sleeps
 * without ever accepting; fillers take every place in its accept queue, after which the kernel
 * drops new SYNs, so a connect to it hangs until the connector's own timeout. Killed by PID and
 * its fillers closed when the test ends. Resolves with its port.
 */
export async function hangingBackend(t: { teardown(fn: () => unknown): void }, host = '127.0.0.1'): Promise<number> {
  const script = `const s = require('node:net').createServer();
s.listen({ host: ${JSON.stringify(host)}, port: 0, backlog: 1 }, () => {
  process.stdout.write(s.address().port + '\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
});`
  const [cmd, ...args] = nodeCommand('-e', script)
  const proc = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'inherit'], env: childEnv() })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => stopChild(proc, exited, 1000))
  const port = await within(10_000, 'the hanging backend to listen', new Promise<number>((resolve, reject) => {
    let out = ''
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c
      if (out.includes('\n')) resolve(Number(out.trim()))
    })
    void exited.then((code) => reject(new Error(`the hanging backend exited (${code})`)))
  }))
  const fillers: Socket[] = []
  t.teardown(() => fillers.forEach((s) => s.destroy()))
  // Linux queues backlog + 1 connections; connect until one hangs (its SYN was dropped).
  for (let i = 0; i < 8; i++) {
    const filler = net.connect({ port, host })
    filler.on('error', () => {})
    fillers.push(filler)
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 300)
      filler.once('connect', () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
    if (!connected) return port
  }
  throw new Error('the hanging backend kept accepting: its accept queue never filled')
}

export function connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, localAddress, allowHalfOpen: true })
    socket.once('connect', () => {
      socket.removeListener('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/**
 * Reads until the peer's FIN (or a close/reset); resolves with everything and how it ended.
 * Test clients are allowHalfOpen, so 'end' — not 'close' — is when the peer is done.
 */
export function readAll(socket: Socket): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.once('end', () => resolve({ data: Buffer.concat(chunks) }))
    socket.resume()
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error: err.code ?? err.message }))
    socket.once('close', () => resolve({ data: Buffer.concat(chunks) }))
  })
}

/** Reads one line (up to \n) from the socket. */
export function readLine(socket: Socket, timeoutMs = 5000): Promise<string> {
  return within(timeoutMs, 'a line from the socket', new Promise<string>((resolve, reject) => {
    let text = ''
    const onData = (c: Buffer): void => {
      text += c.toString('latin1')
      const nl = text.indexOf('\n')
      if (nl >= 0) {
        cleanup()
        socket.unshift(Buffer.from(text.slice(nl + 1), 'latin1'))
        resolve(text.slice(0, nl))
      }
    }
    const onEnd = (): void => {
      cleanup()
      reject(new Error(`socket closed before a line (got ${JSON.stringify(text)})`))
    }
    const cleanup = (): void => {
      socket.removeListener('data', onData)
      socket.removeListener('close', onEnd)
      socket.removeListener('end', onEnd)
      socket.pause()
    }
    socket.on('data', onData)
    socket.once('close', onEnd)
    socket.once('end', onEnd)
    socket.resume()
  }))
}

/** Connects (from `localAddress`), reads the greeting line (the backend's name), closes. */
export async function whoAnswers(port: number, localAddress?: string, host = '127.0.0.1'): Promise<string> {
  const socket = await within(5000, `connect to ${host}:${port}`, connect(port, host, localAddress))
  try {
    return await readLine(socket)
  } finally {
    socket.destroy()
  }
}

/** Resident set size of a process in bytes, from /proc. */
export async function rssBytes(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises')
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m ? Number(m[1]) * 1024 : 0
}
