import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { within } from '../helpers/index.js'
import type { CheckResult, CheckRunner, Clock, HealthEvent, RunningCheck, TimerHandle } from '../../lib/health/index.js'

/**
 * A clock whose time moves only when told. Timers fire in due order; after each one the
 * event loop gets a turn so promise chains (a fake check settling) run before the next.
 */
export class FakeClock implements Clock {
  #now = 1_000_000
  #seq = 0
  readonly #timers = new Map<number, { at: number; fn: () => void }>()

  now(): number {
    return this.#now
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const id = ++this.#seq
    this.#timers.set(id, { at: this.#now + Math.max(0, delayMs), fn })
    return id
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number)
  }

  get pending(): number {
    return this.#timers.size
  }

  async advance(ms: number): Promise<void> {
    const end = this.#now + ms
    await turn()
    for (;;) {
      let nextId = -1
      let nextAt = Infinity
      for (const [id, timer] of this.#timers) {
        if (timer.at < nextAt || (timer.at === nextAt && id < nextId)) {
          nextAt = timer.at
          nextId = id
        }
      }
      if (nextId === -1 || nextAt > end) break
      const timer = this.#timers.get(nextId)
      this.#timers.delete(nextId)
      this.#now = nextAt
      timer?.fn()
      await turn()
    }
    this.#now = end
    await turn()
  }
}

export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * A check runner that answers from a script instead of sockets: `verdict(n)` decides the n-th
 * check (0-based); `durationMs` > 0 keeps the check in flight that long on the fake clock.
 */
export class FakeChecks {
  readonly startedAt: number[] = []
  inFlight = 0
  maxInFlight = 0
  readonly #clock: FakeClock
  readonly #verdict: (n: number) => string | true
  readonly #durationMs: number

  constructor(clock: FakeClock, verdict: (n: number) => string | true, durationMs = 0) {
    this.#clock = clock
    this.#verdict = verdict
    this.#durationMs = durationMs
  }

  get count(): number {
    return this.startedAt.length
  }

  readonly run: CheckRunner = () => {
    const clock = this.#clock
    const at = clock.now()
    const verdict = this.#verdict(this.startedAt.length)
    this.startedAt.push(at)
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    let settle!: (r: CheckResult) => void
    const done = new Promise<CheckResult>((resolve) => {
      settle = resolve
    })
    let settled = false
    const finish = (result: CheckResult): void => {
      if (settled) return
      settled = true
      this.inFlight--
      settle(result)
    }
    const result: CheckResult = verdict === true ? { at, durationMs: this.#durationMs, ok: true } : { at, durationMs: this.#durationMs, ok: false, error: verdict }
    if (this.#durationMs > 0) clock.setTimeout(() => finish(result), this.#durationMs)
    else finish(result)
    const running: RunningCheck = { done, cancel: () => finish({ at, durationMs: 0, ok: false, error: 'cancelled' }) }
    return running
  }
}

/** Collects events and lets a test wait, bounded, for the next one matching a predicate. */
export class EventLog {
  readonly events: HealthEvent[] = []
  readonly #waiters: Array<{ match: (e: HealthEvent) => boolean; resolve: (e: HealthEvent) => void }> = []

  readonly listener = (event: HealthEvent): void => {
    this.events.push(event)
    for (let i = 0; i < this.#waiters.length; i++) {
      const w = this.#waiters[i]
      if (w && w.match(event)) {
        this.#waiters.splice(i, 1)
        w.resolve(event)
        return
      }
    }
  }

  next(match: (e: HealthEvent) => boolean, timeoutMs: number, what: string): Promise<HealthEvent> {
    return within(timeoutMs, what, new Promise<HealthEvent>((resolve) => {
      this.#waiters.push({ match, resolve })
    }))
  }
}

/** A loopback server that tracks its sockets so close() really closes everything. */
export class TestServer {
  readonly server: net.Server
  readonly sockets = new Set<net.Socket>()
  accepted = 0

  constructor(onConnection: (socket: net.Socket, n: number) => void = () => {}) {
    this.server = net.createServer((socket) => {
      const n = this.accepted++
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
      socket.on('error', () => {})
      onConnection(socket, n)
    })
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve(this.port)
      })
    })
  }

  /** Resolves once the listener and every accepted socket have fully closed. */
  async close(): Promise<void> {
    const closing = [...this.sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)))
    for (const socket of this.sockets) socket.destroy()
    if (this.server.listening) closing.push(new Promise((resolve) => this.server.close(resolve)))
    await Promise.all(closing)
  }
}

/** Reads everything a client sends until it closes. */
export function collect(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('close', () => resolve(Buffer.concat(chunks)))
  })
}

/** A port that refuses: listen on port 0, then close. */
export async function closedPort(): Promise<number> {
  const s = new TestServer()
  const port = await s.listen()
  await s.close()
  return port
}
