/**
 * A lab of network namespaces for the HA tests. Everything lives inside namespaces the lab makes
 * (veths are created inside them, bridges too), so no address, route or packet touches the
 * host's own interfaces. Every process started in the lab is tracked by PID; `destroy()` kills
 * those, then whatever else is left inside the lab's namespaces, then deletes the namespaces
 * (which takes their veths and bridges with them). A lab's prefix is unique to one test file;
 * `create` first removes stale namespaces with that prefix left by a run that was killed.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { BIN, childEnv, ROOT } from '../helpers/index.js'

/**
 * tap's processinfo injects its loader through NODE_OPTIONS into every spawn (see helpers'
 * childEnv); `env -u` drops it after `ip netns exec`. Both exec, so the PID stays the program's.
 */
const NO_TAP_HOOKS = ['env', '-u', 'NODE_OPTIONS']

export const PEER = path.join(ROOT, 'dist', 'tests', 'ha', 'peer.js')

/** Why the namespace tests cannot run here, or undefined when they can. */
export function skipReason(programs: readonly string[]): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'needs root (ip netns add)'
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return '`ip netns` is not available (iproute2)'
  for (const p of programs) {
    if (spawnSync('sh', ['-c', `command -v ${p}`]).status !== 0) return `${p} is not installed (.ci/run installs it)`
  }
  return undefined
}

export interface Daemon {
  readonly name: string
  readonly proc: ChildProcess
  readonly exited: Promise<number | null>
  output(): string
  /** Resolves with the first output line matching, bounded. */
  waitFor(what: string, match: RegExp, timeoutMs?: number): Promise<string>
}

export function run(cmd: string, args: readonly string[], input?: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args as string[], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
      else resolve(stdout)
    })
    if (input !== undefined) child.stdin!.end(input)
  })
}

export class Lab {
  readonly prefix: string
  readonly dir: string
  readonly #names: string[] = []
  readonly #daemons: Daemon[] = []

  private constructor(prefix: string) {
    this.prefix = prefix
    this.dir = mkdtempSync(path.join(tmpdir(), `${prefix}`))
    // If the runner kills this file (its timeout), teardown never runs: clean up synchronously.
    process.once('exit', this.#onExit)
    process.once('SIGTERM', this.#onSigterm)
  }

  readonly #onExit = (): void => {
    for (const d of this.#daemons) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL')
    for (const n of this.#names) {
      const ns = this.ns(n)
      for (const pid of spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch { /* gone */ }
      }
      spawnSync('ip', ['netns', 'del', ns])
    }
  }

  readonly #onSigterm = (): void => {
    this.#onExit()
    process.exit(143)
  }

  /**
   * A lab for one tap test: destroyed when the test ends, after printing every process's last
   * output when the test failed.
   */
  static async forTest(t: Test, prefix: string, names: readonly string[]): Promise<Lab> {
    const lab = await Lab.create(prefix, names)
    t.teardown(async () => {
      if (!t.passing()) process.stderr.write(lab.dump() + '\n')
      await lab.destroy()
    })
    return lab
  }

  /** Removes stale namespaces of this prefix, then makes fresh ones (lo up in each). */
  static async create(prefix: string, names: readonly string[]): Promise<Lab> {
    await removeStale(prefix)
    const lab = new Lab(prefix)
    lab.#names.push(...names)
    await lab.sh(names.flatMap((n) => [`ip netns add ${lab.ns(n)}`, `ip -n ${lab.ns(n)} link set lo up`]))
    return lab
  }

  /**
   * Runs shell commands in one `sh -e` (one process start instead of one per command: on a
   * loaded box each start costs). `{ns}` in a command becomes the lab's prefix.
   */
  sh(commands: readonly string[]): Promise<string> {
    return run('sh', ['-ec', commands.map((c) => c.replaceAll('{ns}', this.prefix)).join('\n')])
  }

  ns(name: string): string {
    return `${this.prefix}${name}`
  }

  /** Runs ip commands (one per line, without "ip") inside namespace `name` in one process. */
  ip(name: string, lines: readonly string[]): Promise<string> {
    return run('ip', ['-n', this.ns(name), '-batch', '-'], lines.join('\n') + '\n')
  }

  /** `ip netns exec NS cmd...` to completion. */
  exec(name: string, argv: readonly string[], timeoutMs?: number): Promise<string> {
    return run('ip', ['netns', 'exec', this.ns(name), ...NO_TAP_HOOKS, ...argv], undefined, timeoutMs)
  }

  /** Commands for a veth pair with one end in each namespace, created inside `a` (never in the host's). */
  link(a: string, aIf: string, b: string, bIf: string): string[] {
    return [
      `ip -n ${this.ns(a)} link add ${aIf} type veth peer name ${bIf} netns ${this.ns(b)}`,
      `ip -n ${this.ns(a)} link set ${aIf} up`,
      `ip -n ${this.ns(b)} link set ${bIf} up`,
    ]
  }

  /** A command that sets sysctls inside a namespace (they are per namespace: the host's stay as they are). */
  sysctl(name: string, settings: Record<string, string | number>): string {
    return `ip netns exec ${this.ns(name)} sysctl -q -w ${Object.entries(settings).map(([k, v]) => `${k}=${v}`).join(' ')}`
  }

  /** Starts a long-running process inside a namespace; tracked and killed by PID in destroy(). */
  start(name: string, label: string, argv: readonly string[], env: NodeJS.ProcessEnv = {}): Daemon {
    const proc = spawn('ip', ['netns', 'exec', this.ns(name), ...NO_TAP_HOOKS, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv(env) })
    let out = ''
    const waiters: Array<{ match: RegExp; resolve: (line: string) => void }> = []
    const onData = (chunk: string): void => {
      out += chunk
      for (let i = waiters.length - 1; i >= 0; i--) {
        const found = out.split('\n').find((l) => waiters[i]!.match.test(l))
        if (found !== undefined) waiters.splice(i, 1)[0]!.resolve(found)
      }
    }
    proc.stdout!.setEncoding('utf8').on('data', onData)
    proc.stderr!.setEncoding('utf8').on('data', onData)
    proc.stdin!.on('error', () => {})
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
    const daemon: Daemon = {
      name: label,
      proc,
      exited,
      output: () => out,
      waitFor: (what, match, timeoutMs = 10_000) => {
        const found = out.split('\n').find((l) => match.test(l))
        if (found !== undefined) return Promise.resolve(found)
        return new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs}ms waiting for ${label}: ${what}\n${out.slice(-2000)}`)), timeoutMs)
          waiters.push({ match, resolve: (l) => { clearTimeout(timer); resolve(l) } })
          void exited.then((code) => { clearTimeout(timer); reject(new Error(`${label} exited (${code}) while waiting for ${what}\n${out.slice(-2000)}`)) })
        })
      },
    }
    this.#daemons.push(daemon)
    return daemon
  }

  /** Echo backends (peer.ts) on each `host:port` of `backends` inside namespace `name`; resolves once all listen. */
  async startBackends(name: string, backends: readonly string[]): Promise<Daemon> {
    const echo = this.start(name, 'backends', [process.execPath, PEER, 'echo', ...backends])
    await echo.waitFor('backends listening', new RegExp(`listening ${backends.at(-1)!.replace(/\./g, '\\.')}`))
    return echo
  }

  /**
   * Starts l4lb in namespace `name` as the HA scenarios run it: one service on `:port` over
   * `backends` in the order given (Maglev, the default, so order must not matter), TCP checks
   * every 200 ms with fall 2, admin (and /healthz) on 127.0.0.1:9090. Returns the config file too.
   */
  startL4lb(name: string, port: number, backends: readonly string[]): { daemon: Daemon; config: string } {
    const config = path.join(this.dir, `${name}.yaml`)
    writeFileSync(config, `services:
  - name: vip
    listen: [":${port}"]
    health: { type: tcp, interval: 200ms, timeout: 500ms, rise: 1, fall: 2 }
    backends: [${backends.map((b) => JSON.stringify(b)).join(', ')}]
admin: 127.0.0.1:9090
log: { level: warn }
`)
    return { daemon: this.start(name, `l4lb-${name}`, [process.execPath, BIN, '-c', config]), config }
  }

  /** The last lines of every process's output, for a failing test's diagnostics. */
  dump(): string {
    return this.#daemons.map((d) => `--- ${d.name} (pid ${d.proc.pid ?? '?'}, exit ${d.proc.exitCode ?? d.proc.signalCode ?? 'running'})\n${d.output().split('\n').slice(-25).join('\n')}`).join('\n')
  }

  /** Kills tracked processes (SIGTERM, SIGKILL after 2 s), then the rest in our namespaces, then the namespaces. */
  async destroy(): Promise<void> {
    await Promise.all(this.#daemons.map(async (d) => {
      if (d.proc.exitCode !== null || d.proc.signalCode !== null) return
      d.proc.kill('SIGTERM')
      const timer = setTimeout(() => d.proc.kill('SIGKILL'), 2000)
      await d.exited
      clearTimeout(timer)
    }))
    for (const n of this.#names) await removeNamespace(this.ns(n))
    this.#names.length = 0
    process.removeListener('exit', this.#onExit)
    process.removeListener('SIGTERM', this.#onSigterm)
    rmSync(this.dir, { recursive: true, force: true })
  }
}

async function removeNamespace(ns: string): Promise<void> {
  // What is still inside (keepalived's children, a gate's curl) was started by this lab.
  for (let attempt = 0; attempt < 20; attempt++) {
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => '')).split('\n').filter(Boolean).map(Number)
    if (pids.length === 0) break
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch { /* already gone */ }
    }
    await sleep(50)
  }
  await run('ip', ['netns', 'del', ns]).catch(() => undefined)
}

async function removeStale(prefix: string): Promise<void> {
  const list = await run('ip', ['netns', 'list'])
  for (const line of list.split('\n')) {
    const ns = line.split(' ')[0]
    if (ns && ns.startsWith(prefix)) await removeNamespace(ns)
  }
}

/**
 * An example from conf/ with each `from` replaced; each must occur, so a changed example fails
 * here instead of passing a test that no longer exercises it.
 */
export function renderExample(file: string, text: string, replacements: ReadonlyArray<readonly [string, string]>): string {
  let out = text
  for (const [from, to] of replacements) {
    if (!out.includes(from)) throw new Error(`conf/${file} no longer contains ${JSON.stringify(from)}`)
    out = out.split(from).join(to)
  }
  return out
}
