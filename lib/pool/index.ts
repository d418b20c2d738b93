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
import { MAX_WEIGHT, resolveAlgorithm, type Algorithm, type BalanceEntry, type PickData, type Picker } from '../balance/index.js'
import type { BackendConfig } from '../config/index.js'
import { ConfigError } from '../errors.js'

/** Operator-set state; `enabled` defers to health. */
export type AdminState = 'enabled' | 'drain' | 'maint'
/**
 * What operators see: health unless an admin state overrides it. `starting` is a checked
 * backend whose first check has not decided yet: neither up nor down, and it takes no traffic.
 */
export type BackendState = 'up' | 'down' | 'starting' | 'drain' | 'maint'
export const BACKEND_STATES: readonly BackendState[] = ['up', 'down', 'starting', 'drain', 'maint']

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

/**
 * Upper bounds (ms) of the health-check duration histogram's buckets (the last, +Inf, is
 * implicit): a loopback check takes under a millisecond, a check timeout is seconds.
 */
export const CHECK_DURATION_BOUNDS_MS: readonly number[] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

/** How long the data path steers around a backend that just refused, while the prober confirms. */
export const PASSIVE_AVOID_MS = 2_000

/**
 * Slow start (HAProxy's `slowstart`, src/server.c server_recalc_eweight): weights are scaled by
 * up to WEIGHT_SCALE (HAProxy's BE_WEIGHT_SCALE is 16) so a weight-1 backend can ramp in steps;
 * the scale is fixed for the pool (never only during a ramp), so hashing tables do not move when
 * a ramp starts or ends. The picker is rebuilt at most RAMP_STEPS times per ramp, never per
 * connection, and no more often than MIN_RAMP_STEP_MS.
 */
export const WEIGHT_SCALE = 16
export const RAMP_STEPS = 32
export const MIN_RAMP_STEP_MS = 100

/** Time for slow start; injectable so tests run the ramp on a fake clock. */
export interface PoolClock {
  now(): number
  setTimeout(fn: () => void, delayMs: number): unknown
  clearTimeout(handle: unknown): void
}

const realClock: PoolClock = {
  now: () => Date.now(),
  setTimeout(fn, delayMs) {
    const timer = setTimeout(fn, delayMs)
    timer.unref()
    return timer
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

export class Backend {
  readonly id: number
  readonly name: string
  readonly host: string
  readonly port: number
  /** The weight picks use now: the config's, or an operator's (Pool.setWeight) until the next update. */
  weight: number
  /** The weight the config (or the SRV record) gave. */
  configWeight: number
  backup: boolean
  checkPort: number | undefined
  /** Connections at once (connecting or open); 0 = no limit. More wait in its queue. */
  maxConns: number
  /** The IP actually dialed: `host` resolved at load (never per connection). */
  readonly address: string
  healthUp: boolean
  /** Checked and not yet decided by a first check (see BackendState). */
  starting: boolean
  admin: AdminState = 'enabled'
  /** False once a reload or DNS change took it out of the pool; connections on it finish. */
  current = true
  /** Its name did not resolve (`setUnresolved`): down whatever checks say; a refresh that resolves it brings a new backend. */
  unresolved = false
  lastChangeAt = Date.now()
  lastReason = 'start'
  lastError: string | undefined
  /** Until when (ms since epoch) picks steer around this backend after a refused connect. */
  avoidUntil = 0
  /** Slow start: when its ramp began (pool clock), 0 when it serves at full weight. */
  rampStartedAt = 0
  /** Added by a reload: its first up ramps too (backends there at start do not, as in HAProxy). */
  rampOnFirstUp = false
  connectionsTotal = 0
  connectErrorsTotal = 0
  /** Data-path connect failures by error code (ECONNREFUSED, timeout, …) for metrics. */
  readonly connectErrors = new Map<string, number>()
  bytesFromClients = 0
  bytesFromBackend = 0
  /** Checks by duration bucket (CHECK_DURATION_BOUNDS_MS, then +Inf; not cumulative) and their sum. */
  readonly checkDurationCounts = new Float64Array(CHECK_DURATION_BOUNDS_MS.length + 1)
  checkDurationSumMs = 0

  constructor(id: number, config: BackendConfig, address: string, checked: boolean) {
    this.id = id
    this.name = config.name
    this.host = config.host
    this.port = config.port
    this.weight = config.weight
    this.configWeight = config.weight
    this.backup = config.backup
    this.checkPort = config.checkPort
    this.maxConns = config.maxConns
    this.address = address
    this.healthUp = !checked
    this.starting = checked
  }

  get state(): BackendState {
    if (this.admin === 'maint') return 'maint'
    if (this.admin === 'drain') return 'drain'
    if (this.healthUp) return 'up'
    return this.starting ? 'starting' : 'down'
  }

  get usable(): boolean {
    return this.admin === 'enabled' && this.healthUp && this.current
  }
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

/** What a data plane needs to pick as this pool does: the usable backends and the picker's data. */
export interface PoolPickData {
  /** Indexed like the picker's entries: the address dialed, the backend's counter slot and its maxConns. */
  readonly entries: ReadonlyArray<{ readonly address: string; readonly port: number; readonly slot: number; readonly maxConns: number }>
  readonly pick: PickData
  /**
   * The usable backups while primaries serve, with their own picker's data: where a connection
   * that tried every primary goes (pick's redispatch). Absent when there are none.
   */
  readonly backup?: { readonly entries: PoolPickData['entries']; readonly pick: PickData }
}

/** What an update did, by backend name (a changed address counts as removed and added). */
export interface PoolUpdate {
  readonly added: readonly string[]
  readonly removed: readonly string[]
  readonly kept: readonly string[]
}

/** Most connections one backend's queue holds; past it new ones are refused at once. */
export const MAX_QUEUE = 10_000

/** A connection waiting for a slot of a backend at its maxConns (HAProxy's server queue). */
export interface Waiter {
  /** The slot is now this waiter's (already taken for it): connect. */
  wake(): void
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
  /** Connections holding a backend's slot (connecting or open), by id: what maxConns limits. */
  #taken = new Int32Array(0)
  /** FIFO of connections waiting for a slot, by backend id (created on first use). */
  readonly #queues = new Map<number, Waiter[]>()
  #algorithm: Algorithm
  #checked: boolean
  #picker: Picker
  #pickable: Backend[] = []
  /** Usable backups while primaries serve: the redispatch target once a connection has tried every primary. */
  #backupPicker: Picker | null = null
  #backups: Backend[] = []
  #usableCount = 0
  #usingBackups = false
  /** What the pickers were built from (ids and effective weights): an unchanged set keeps them. */
  #builtFrom = ''
  #slowStartMs = 0
  #weightScale = 1
  readonly #clock: PoolClock
  #rampTimer: unknown = undefined
  readonly #listeners: Listener[] = []
  readonly #passiveListeners: PassiveListener[] = []
  readonly #rebuildListeners: Array<() => void> = []
  readonly #activeStorage: Int32Array | undefined
  #queuedReader: ((id: number) => number) | undefined

  constructor(options: PoolOptions) {
    this.name = options.name
    this.#activeStorage = options.activeStorage
    this.#clock = options.clock ?? realClock
    this.#algorithm = options.algorithm ?? algorithmOf(options.balance)
    this.#checked = options.checked
    this.#replaceBackends(options.backends, options.addresses)
    this.#setSlowStart(options.slowStartMs ?? 0)
    this.#picker = this.#rebuild()
  }

  /** Backends that new connections can go to now (primaries, or backups when no primary is usable). */
  get usableCount(): number {
    return this.#usableCount
  }

  get usingBackups(): boolean {
    return this.#usingBackups
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
    if (algorithm !== this.#algorithm) this.#builtFrom = ''
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
      this.#taken = grown(this.#taken, this.#slots.length)
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
    const found = pickFrom(this.#picker, this.#pickable, hash, tried)
    if (found !== undefined || !tried || !redispatch || this.#backupPicker === null) return found
    return pickFrom(this.#backupPicker, this.#backups, hash, tried)
  }

  /** Whether the algorithm keeps a client on its backend (then a full backend is waited for, not skipped). */
  get hashed(): boolean {
    return this.#algorithm.hashed
  }

  /** Takes a slot of `backend` for a connection when it has one free (always, without maxConns). */
  tryTake(backend: Backend): boolean {
    if (backend.maxConns > 0 && this.#taken[backend.id]! >= backend.maxConns) return false
    this.#taken[backend.id]!++
    return true
  }

  /**
   * Gives a slot back; the first waiter of the backend's queue gets it (the slot passes to it
   * directly, so a newcomer cannot jump the queue).
   */
  giveBack(backend: Backend): void {
    const queue = this.#queues.get(backend.id)
    const next = queue?.shift()
    if (next !== undefined) {
      if (queue!.length === 0) this.#queues.delete(backend.id)
      next.wake()
      return
    }
    this.#taken[backend.id]!--
  }

  /** Queues a waiter for a slot of `backend`; false when the queue is full. */
  enqueue(backend: Backend, waiter: Waiter): boolean {
    let queue = this.#queues.get(backend.id)
    if (queue === undefined) this.#queues.set(backend.id, (queue = []))
    if (queue.length >= MAX_QUEUE) return false
    queue.push(waiter)
    return true
  }

  /** Takes a waiter out of its queue (it timed out or its client left). */
  dequeue(backend: Backend, waiter: Waiter): void {
    const queue = this.#queues.get(backend.id)
    const at = queue?.indexOf(waiter) ?? -1
    if (at < 0) return
    queue!.splice(at, 1)
    if (queue!.length === 0) this.#queues.delete(backend.id)
  }

  /** Connections waiting for a slot of `backend` now. */
  queued(backend: Backend): number {
    if (this.#queuedReader !== undefined) return this.#queuedReader(backend.id)
    return this.#queues.get(backend.id)?.length ?? 0
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
    const entriesOf = (backends: readonly Backend[]): PoolPickData['entries'] => backends.map((b) => ({ address: b.address, port: b.port, slot: b.id, maxConns: b.maxConns }))
    const data = { entries: entriesOf(this.#pickable), pick: this.#picker.exportPickData!() }
    if (this.#backupPicker === null) return data
    return { ...data, backup: { entries: entriesOf(this.#backups), pick: this.#backupPicker.exportPickData!() } }
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
    if (!wasUsable && backend.usable && this.#slowStartMs > 0 && (from !== 'starting' || backend.rampOnFirstUp)) {
      backend.rampStartedAt = this.#clock.now()
      this.#scheduleRamp()
    }
    if (!backend.usable) backend.rampStartedAt = 0
    if (wasUsable !== backend.usable) this.#refresh()
    if (from === to || !backend.current) return
    const change: StateChange = {
      pool: this.name, backend, from, to, reason, lastError, usableCount: this.#usableCount, usingBackups: this.#usingBackups,
    }
    for (const l of this.#listeners) l(change)
  }

  /**
   * A backend's weight for the picker: its configured weight times the pool's scale, or during
   * a ramp the share of that reached so far (at least 1, so it starts at once, at the smallest
   * step, as HAProxy's does). A finished ramp is cleared here.
   */
  #effectiveWeight(b: Backend, now: number): number {
    const full = b.weight * this.#weightScale
    if (b.rampStartedAt === 0) return full
    const elapsed = now - b.rampStartedAt
    if (elapsed >= this.#slowStartMs || elapsed < 0) {
      b.rampStartedAt = 0
      return full
    }
    return Math.max(1, Math.ceil((full * elapsed) / this.#slowStartMs))
  }

  #setSlowStart(slowStartMs: number): void {
    this.#slowStartMs = slowStartMs
    // As large as HAProxy's scale while the heaviest weight stays within the balancers' range.
    const heaviest = Math.max(1, ...this.backends.map((b) => b.weight))
    const scale = slowStartMs > 0 ? Math.max(1, Math.min(WEIGHT_SCALE, Math.floor(MAX_WEIGHT / heaviest))) : 1
    if (scale !== this.#weightScale) this.#builtFrom = ''
    this.#weightScale = scale
    if (slowStartMs === 0) for (const b of this.backends) b.rampStartedAt = 0
  }

  /** One timer per pool while any backend ramps: each tick rebuilds only if a weight moved. */
  #scheduleRamp(): void {
    if (this.#rampTimer !== undefined) return
    const stepMs = Math.max(MIN_RAMP_STEP_MS, Math.ceil(this.#slowStartMs / RAMP_STEPS))
    // The last step lands when the first ramp ends, not up to a step later.
    const delay = (): number => {
      let next = stepMs
      for (const b of this.backends) if (b.rampStartedAt !== 0) next = Math.min(next, b.rampStartedAt + this.#slowStartMs - this.#clock.now())
      return Math.max(1, next)
    }
    const tick = (): void => {
      this.#rampTimer = undefined
      this.#refresh()
      if (this.backends.some((b) => b.rampStartedAt !== 0)) this.#rampTimer = this.#clock.setTimeout(tick, delay())
    }
    this.#rampTimer = this.#clock.setTimeout(tick, delay())
  }

  /** Effective weight by backend id while ramping (for /status and tests); full weight otherwise. */
  weightOf(backend: Backend): number {
    return this.#effectiveWeight(backend, this.#clock.now())
  }

  /** Rebuilds the pickers; a data plane that picks by itself is told when they changed. */
  #refresh(): void {
    const picker = this.#rebuild()
    if (picker === this.#picker) return
    this.#picker = picker
    for (const l of this.#rebuildListeners) l()
  }

  #rebuild(): Picker {
    const primaries = this.backends.filter((b) => b.usable && !b.backup)
    const backups = this.backends.filter((b) => b.usable && b.backup)
    this.#usingBackups = primaries.length === 0 && backups.length > 0
    const pickable = primaries.length > 0 ? primaries : backups
    this.#pickable = pickable
    this.#usableCount = pickable.length
    this.#backups = primaries.length > 0 ? backups : []
    const now = this.#clock.now()
    const entries = pickable.map((b) => ({ name: b.name, weight: this.#effectiveWeight(b, now), slot: b.id }))
    const backupEntries = this.#backups.map((b) => ({ name: b.name, weight: this.#effectiveWeight(b, now), slot: b.id }))
    // Nothing the pickers see changed: keep them (and round-robin's place in its sequence).
    const builtFrom = `${signatureOf(entries)}|${signatureOf(backupEntries)}`
    if (builtFrom === this.#builtFrom) return this.#picker
    this.#builtFrom = builtFrom
    this.#backupPicker = backupEntries.length > 0 ? this.#algorithm.createPicker(backupEntries, this.active, this.#backupPicker ?? undefined) : null
    return this.#algorithm.createPicker(entries, this.active, this.#picker)
  }
}

function signatureOf(entries: readonly BalanceEntry[]): string {
  let out = ''
  for (const e of entries) out += `${e.slot}:${e.weight},`
  return out
}

function algorithmOf(balance: string): Algorithm {
  const algorithm = resolveAlgorithm(balance)
  if (!algorithm) throw new ConfigError('balance', balance, 'unknown balance algorithm')
  return algorithm
}

function grown(array: Int32Array, length: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(length)
  next.set(array)
  return next
}

function identity(name: string, address: string, port: number): string {
  return `${name}\n${address}\n${port}`
}

/** One pick over `pickable` that leaves out `tried` and steers around recent refusals. */
function pickFrom(picker: Picker, pickable: readonly Backend[], hash: number, tried: ReadonlySet<number> | null | undefined): Backend | undefined {
  let exclude: Set<number> | null = null
  if (tried && tried.size > 0) {
    exclude = new Set()
    for (let i = 0; i < pickable.length; i++) if (tried.has(pickable[i]!.id)) exclude.add(i)
  }
  let index = picker.pick(hash, exclude)
  if (index < 0) return undefined
  // Steer around a backend that refused a moment ago, but never refuse a client for it:
  // if it is the only choice left, it is still tried.
  const avoidUntil = pickable[index]!.avoidUntil
  if (avoidUntil !== 0 && avoidUntil > Date.now()) {
    exclude ??= new Set()
    const now = Date.now()
    for (let i = 0; i < pickable.length; i++) if (pickable[i]!.avoidUntil > now) exclude.add(i)
    const other = picker.pick(hash, exclude)
    if (other >= 0) index = other
  }
  return pickable[index]
}
