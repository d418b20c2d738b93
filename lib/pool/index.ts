/**
 * A service's backends and their states. The pool is the one door through which health and
 * admin changes reach the balancer (HAProxy's srv_lb_propagate): every change that alters the
 * usable set rebuilds the picker and swaps one reference, and `usableCount` is computed then —
 * nobody asks "is anything up?" by calling a stateful pick (nodejs/undici#4839).
 *
 * A pool lives as long as its service: reloads and DNS changes update it in place
 * (`update`), so health, admin state, counters and the `active` counts least-conn reads
 * survive (issue 12). A backend's `id` is a slot that is never reused within the pool, so a
 * connection or session that outlives its backend's removal still closes on the right counter.
 */
import { resolveAlgorithm, type Algorithm } from '../balance/index.js'
import type { BackendConfig } from '../config/index.js'
import { ConfigError } from '../errors.js'
import { Backend, PASSIVE_AVOID_MS, CHECK_DURATION_BOUNDS_MS, type AdminState, type BackendState } from './backend.js'
import { PickSet, type PickInputs, type PoolPickData } from './pick.js'
import { grown, Slots, type Waiter } from './queue.js'
import { realClock, SlowStart, type PoolClock } from './slow-start.js'

export { Backend, BACKEND_STATES, CHECK_DURATION_BOUNDS_MS, PASSIVE_AVOID_MS, type AdminState, type BackendState } from './backend.js'
export { MAX_QUEUE, type Waiter } from './queue.js'
export type { PoolPickData } from './pick.js'
export { MIN_RAMP_STEP_MS, RAMP_STEPS, WEIGHT_SCALE, type PoolClock } from './slow-start.js'

export interface StateChange {
  readonly pool: string
  readonly backend: Backend
  readonly from: BackendState
  readonly to: BackendState
  readonly reason: string
  readonly lastError: string | undefined
  /** The pool's usable set right after this change (not after a later one). */
  readonly usableCount: number
  readonly usingBackups: boolean
}

export interface PoolOptions {
  readonly name: string
  readonly balance: string
  readonly backends: readonly BackendConfig[]
  /** Resolved IP for each backend, same order as `backends`. */
  readonly addresses: readonly string[]
  /** True when a prober decides health: backends start `starting`. Without one they start up. */
  readonly checked: boolean
  /**
   * Memory for the live counts when a data plane keeps them itself (the native plane's shared
   * counters): `active` is a prefix of it and grows within it, so both sides always count in the
   * same place. Default: plain arrays the node plane updates.
   */
  readonly activeStorage?: Int32Array
  /** The algorithm object, when the caller resolved `balance` itself (a registry from lib/api). */
  readonly algorithm?: Algorithm | undefined
  /** A backend coming back up ramps from near zero to its weight over this long; 0 = off. */
  readonly slowStartMs?: number
  readonly clock?: PoolClock
}

/** What an update did, by backend name (a changed address counts as removed and added). */
export interface PoolUpdate {
  readonly added: readonly string[]
  readonly removed: readonly string[]
  readonly kept: readonly string[]
}

type Listener = (change: StateChange) => void
type PassiveListener = (backend: Backend, error: string) => void

export class Pool {
  readonly name: string
  /** The current backends, in config order. */
  backends: readonly Backend[] = []
  /** Live active-connection counts by backend id; the data path increments, pickers read. */
  active: Int32Array = new Int32Array(0)
  /** Every backend this pool ever had, by id (slots are never reused). */
  readonly #slots: Backend[] = []
  /** maxConns: slots taken and queues, by backend id. */
  readonly #limits = new Slots()
  #algorithm: Algorithm
  #checked: boolean
  #picks: PickSet
  /** The next build must not keep the current pickers (the algorithm or the weight scale changed). */
  #fresh = false
  readonly #slowStart: SlowStart
  readonly #listeners: Listener[] = []
  readonly #passiveListeners: PassiveListener[] = []
  readonly #rebuildListeners: Array<() => void> = []
  readonly #activeStorage: Int32Array | undefined
  #queuedReader: ((id: number) => number) | undefined

  constructor(options: PoolOptions) {
    this.name = options.name
    this.#activeStorage = options.activeStorage
    this.#slowStart = new SlowStart(options.clock ?? realClock, () => this.backends, () => this.#refresh())
    this.#algorithm = options.algorithm ?? algorithmOf(options.balance)
    this.#checked = options.checked
    this.#replaceBackends(options.backends, options.addresses)
    this.#setSlowStart(options.slowStartMs ?? 0)
    this.#picks = PickSet.build(this.#pickInputs(), undefined, true)
    this.#fresh = false
  }

  /** Backends that new connections can go to now (primaries, or backups when no primary is usable). */
  get usableCount(): number {
    return this.#picks.usableCount
  }

  get usingBackups(): boolean {
    return this.#picks.usingBackups
  }

  byName(name: string): Backend | undefined {
    return this.backends.find((b) => b.name === name)
  }

  /** Any backend by id, current or removed (health events and closes of old connections). */
  byId(id: number): Backend | undefined {
    return this.#slots[id]
  }

  /**
   * Reload / DNS change, in place. A backend is the same one when its name, address and port
   * are: it keeps its id, health, admin state and counters, and takes the new weight, backup
   * flag and check port. Any other is new (starting when checked) and a missing one leaves the
   * pool; its connections finish on it. `checked` is whether a prober decides health now.
   */
  update(options: Omit<PoolOptions, 'name' | 'clock'>): PoolUpdate {
    const algorithm = options.algorithm ?? algorithmOf(options.balance)
    // A new algorithm builds from scratch: the old picker's state means nothing to it.
    if (algorithm !== this.#algorithm) this.#fresh = true
    this.#algorithm = algorithm
    const wasChecked = this.#checked
    this.#checked = options.checked
    const result = this.#replaceBackends(options.backends, options.addresses)
    for (const name of result.added) {
      const b = this.byName(name)
      if (b) b.rampOnFirstUp = true
    }
    this.#setSlowStart(options.slowStartMs ?? 0)
    // Checks switched off: nothing will ever decide health again, so everything serves.
    if (wasChecked && !options.checked) {
      for (const b of this.backends) {
        if (b.unresolved) continue
        b.healthUp = true
        b.starting = false
      }
    }
    this.#refresh()
    return result
  }

  #replaceBackends(configs: readonly BackendConfig[], addresses: readonly string[]): PoolUpdate {
    const previous = new Map(this.backends.map((b) => [identity(b.name, b.address, b.port), b]))
    const added: string[] = []
    const kept: string[] = []
    const next: Backend[] = []
    configs.forEach((config, i) => {
      const address = addresses[i] ?? config.host
      const key = identity(config.name, address, config.port)
      const old = previous.get(key)
      if (old) {
        previous.delete(key)
        old.weight = config.weight
        old.configWeight = config.weight
        old.backup = config.backup
        old.checkPort = config.checkPort
        old.maxConns = config.maxConns
        kept.push(old.name)
        next.push(old)
        return
      }
      const backend = new Backend(this.#slots.length, config, address, this.#checked)
      this.#slots.push(backend)
      added.push(backend.name)
      next.push(backend)
    })
    for (const gone of previous.values()) gone.current = false
    if (this.active.length < this.#slots.length) {
      const storage = this.#activeStorage
      this.active = storage !== undefined && storage.length >= this.#slots.length ? storage.subarray(0, this.#slots.length) : grown(this.active, this.#slots.length)
      this.#limits.grow(this.#slots.length)
    }
    this.backends = next
    return { added, removed: [...previous.values()].map((b) => b.name), kept }
  }

  /**
   * Picks a backend for a connection whose key hashes to `hash`. `tried` holds ids of backends
   * that already failed for this connection; once every usable primary is in it, a usable
   * backup is picked (HAProxy's redispatch reaching the backup servers) unless `redispatch`
   * is false. Returns undefined when nothing is left.
   */
  pick(hash: number, tried?: ReadonlySet<number> | null, redispatch = true): Backend | undefined {
    return this.#picks.pick(hash, tried, redispatch)
  }

  /** Whether the algorithm keeps a client on its backend (then a full backend is waited for, not skipped). */
  get hashed(): boolean {
    return this.#algorithm.hashed
  }

  /** Takes a slot of `backend` for a connection when it has one free (always, without maxConns). */
  tryTake(backend: Backend): boolean {
    return this.#limits.tryTake(backend)
  }

  /** Gives a slot back; the first waiter of the backend's queue gets it (no newcomer jumps the queue). */
  giveBack(backend: Backend): void {
    this.#limits.giveBack(backend)
  }

  /** Queues a waiter for a slot of `backend`; false when the queue is full. */
  enqueue(backend: Backend, waiter: Waiter): boolean {
    return this.#limits.enqueue(backend, waiter)
  }

  /** Takes a waiter out of its queue (it timed out or its client left). */
  dequeue(backend: Backend, waiter: Waiter): void {
    this.#limits.dequeue(backend, waiter)
  }

  /** Connections waiting for a slot of `backend` now. */
  queued(backend: Backend): number {
    if (this.#queuedReader !== undefined) return this.#queuedReader(backend.id)
    return this.#limits.queued(backend)
  }

  /** The native plane keeps its queues itself (shared counters): `queued` reads them through `reader`. */
  readQueuedFrom(reader: (id: number) => number): void {
    this.#queuedReader = reader
  }

  connectionOpened(backend: Backend): void {
    this.active[backend.id]!++
    backend.connectionsTotal++
  }

  /**
   * A connection the native plane carried has closed: its live count is the plane's (shared
   * counters), the totals are counted here from its close record.
   */
  connectionRecorded(backend: Backend, bytesFromClient: number, bytesFromBackend: number): void {
    backend.connectionsTotal++
    backend.bytesFromClients += bytesFromClient
    backend.bytesFromBackend += bytesFromBackend
  }

  /** The usable backends and the pickers' lookup data, for a data plane that picks by itself. */
  exportPickData(): PoolPickData {
    return this.#picks.exportPickData()
  }

  /** Called after every change of the usable set (the picker was rebuilt): republish pick data. */
  onRebuild(listener: () => void): void {
    this.#rebuildListeners.push(listener)
  }

  connectionClosed(backend: Backend, bytesFromClient: number, bytesFromBackend: number): void {
    this.active[backend.id]!--
    backend.bytesFromClients += bytesFromClient
    backend.bytesFromBackend += bytesFromBackend
  }

  /**
   * A connect from the data path failed (refused, timed out, unreachable). It is a passive
   * observation: the prober counts it toward `fall`; the state does not flip here.
   */
  observeConnectFailure(backend: Backend, error: string): void {
    backend.connectErrorsTotal++
    backend.lastError = error
    backend.connectErrors.set(error, (backend.connectErrors.get(error) ?? 0) + 1)
    backend.avoidUntil = Date.now() + PASSIVE_AVOID_MS
    for (const l of this.#passiveListeners) l(backend, error)
  }

  /** A health check of the backend finished (passed or failed) after `durationMs`. */
  observeCheck(backendId: number, durationMs: number): void {
    const backend = this.#slots[backendId]
    if (!backend) return
    let i = 0
    while (i < CHECK_DURATION_BOUNDS_MS.length && durationMs > CHECK_DURATION_BOUNDS_MS[i]!) i++
    backend.checkDurationCounts[i]!++
    backend.checkDurationSumMs += durationMs
  }

  onPassiveFailure(listener: PassiveListener): void {
    this.#passiveListeners.push(listener)
  }

  onStateChange(listener: Listener): void {
    this.#listeners.push(listener)
  }

  /**
   * A backend whose name did not resolve (issue 16: one bad name must not stop the start): down
   * with the DNS error as its reason, in /status and the log, until a refresh resolves the name
   * (a new address makes it a new backend, which starts like any other).
   */
  setUnresolved(backendId: number, error: string): void {
    const backend = this.#slots[backendId]
    if (!backend || (backend.unresolved && backend.lastError === error)) return
    this.#change(backend, 'dns', error, () => {
      backend.unresolved = true
      backend.healthUp = false
      backend.starting = false
    })
  }

  /** Applies a health event from the prober. */
  setHealth(backendId: number, up: boolean, reason: string, lastError?: string): void {
    const backend = this.#slots[backendId]
    if (!backend || (backend.healthUp === up && !backend.starting) || (up && backend.unresolved)) return
    this.#change(backend, reason, lastError, () => {
      backend.healthUp = up
      backend.starting = false
    })
  }

  /** A checked backend goes back to `starting` (leaving maint: the prober re-checks from scratch). */
  setStarting(backendId: number, reason: string): void {
    const backend = this.#slots[backendId]
    if (!backend || backend.starting || backend.unresolved) return
    this.#change(backend, reason, undefined, () => {
      backend.healthUp = false
      backend.starting = true
    })
  }

  /**
   * An operator's weight (admin API), kept until the next reload or DNS change sets the
   * config's again (update). Like every change that alters picks, it rebuilds the picker.
   */
  setWeight(backendId: number, weight: number): void {
    const backend = this.#slots[backendId]
    if (!backend || backend.weight === weight) return
    backend.weight = weight
    if (backend.usable) this.#refresh()
  }

  /** Applies an operator's drain / maint / enable. */
  setAdmin(backendId: number, admin: AdminState, reason = `admin ${admin}`): void {
    const backend = this.#slots[backendId]
    if (!backend || backend.admin === admin) return
    this.#change(backend, reason, undefined, () => {
      backend.admin = admin
    })
  }

  #change(backend: Backend, reason: string, lastError: string | undefined, mutate: () => void): void {
    const from = backend.state
    const wasUsable = backend.usable
    mutate()
    const to = backend.state
    backend.lastChangeAt = Date.now()
    backend.lastReason = reason
    backend.lastError = lastError
    // As in HAProxy, a backend's first up does not ramp, unless a reload added it.
    if (!wasUsable && backend.usable && (from !== 'starting' || backend.rampOnFirstUp)) this.#slowStart.begin(backend)
    if (!backend.usable) backend.rampStartedAt = 0
    if (wasUsable !== backend.usable) this.#refresh()
    if (from === to || !backend.current) return
    const change: StateChange = {
      pool: this.name, backend, from, to, reason, lastError, usableCount: this.#picks.usableCount, usingBackups: this.#picks.usingBackups,
    }
    for (const l of this.#listeners) l(change)
  }

  #setSlowStart(slowStartMs: number): void {
    if (this.#slowStart.configure(slowStartMs)) this.#fresh = true
  }

  /** Effective weight by backend id while ramping (for /status and tests); full weight otherwise. */
  weightOf(backend: Backend): number {
    return this.#slowStart.effectiveWeight(backend, this.#slowStart.clock.now())
  }

  /** Rebuilds the pickers; a data plane that picks by itself is told when they changed. */
  #refresh(): void {
    const picks = PickSet.build(this.#pickInputs(), this.#picks, this.#fresh)
    this.#fresh = false
    if (picks === this.#picks) return
    this.#picks = picks
    for (const l of this.#rebuildListeners) l()
  }

  #pickInputs(): PickInputs {
    const now = this.#slowStart.clock.now()
    return { algorithm: this.#algorithm, backends: this.backends, weightOf: (b) => this.#slowStart.effectiveWeight(b, now), active: this.active }
  }
}

function algorithmOf(balance: string): Algorithm {
  const algorithm = resolveAlgorithm(balance)
  if (!algorithm) throw new ConfigError('balance', balance, 'unknown balance algorithm')
  return algorithm
}

function identity(name: string, address: string, port: number): string {
  return `${name}\n${address}\n${port}`
}
