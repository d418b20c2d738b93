/**
 * A service's backends and their states. The pool is the one door through which health and
 * admin changes reach the balancer (HAProxy's srv_lb_propagate): every change that alters the
 * usable set rebuilds the picker and swaps one reference, and `usableCount` is computed then —
 * nobody asks "is anything up?" by calling a stateful pick (nodejs/undici#4839).
 */
import { resolveAlgorithm, type Algorithm, type BalanceEntry, type Picker } from '../balance/index.js'
import type { BackendConfig } from '../config/index.js'

/** Operator-set state; `enabled` defers to health. */
export type AdminState = 'enabled' | 'drain' | 'maint'
/** What operators see: health (`up`/`down`) unless an admin state overrides it. */
export type BackendState = 'up' | 'down' | 'drain' | 'maint'
export const BACKEND_STATES: readonly BackendState[] = ['up', 'down', 'drain', 'maint']

export interface StateChange {
  readonly pool: string
  readonly backend: Backend
  readonly from: BackendState
  readonly to: BackendState
  readonly reason: string
  readonly lastError: string | undefined
}

/**
 * Upper bounds (ms) of the health-check duration histogram's buckets (the last, +Inf, is
 * implicit): a loopback check takes under a millisecond, a check timeout is seconds.
 */
export const CHECK_DURATION_BOUNDS_MS: readonly number[] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

/** How long the data path steers around a backend that just refused, while the prober confirms. */
export const PASSIVE_AVOID_MS = 2_000

export class Backend {
  readonly id: number
  readonly name: string
  readonly host: string
  readonly port: number
  /** The weight picks use now: the config's, or an operator's (Pool.setWeight) until the next reload. */
  weight: number
  /** The weight the config (or the SRV record) gave. */
  readonly configWeight: number
  readonly backup: boolean
  readonly checkPort: number | undefined
  /** The IP actually dialed: `host` resolved at load (never per connection). */
  address: string
  healthUp: boolean
  admin: AdminState = 'enabled'
  lastChangeAt = Date.now()
  lastReason = 'start'
  lastError: string | undefined
  /** Until when (ms since epoch) picks steer around this backend after a refused connect. */
  avoidUntil = 0
  connectionsTotal = 0
  connectErrorsTotal = 0
  /** Data-path connect failures by error code (ECONNREFUSED, timeout, …) for metrics. */
  readonly connectErrors = new Map<string, number>()
  bytesFromClients = 0
  bytesFromBackend = 0
  /** Checks by duration bucket (CHECK_DURATION_BOUNDS_MS, then +Inf; not cumulative) and their sum. */
  readonly checkDurationCounts = new Float64Array(CHECK_DURATION_BOUNDS_MS.length + 1)
  checkDurationSumMs = 0

  constructor(id: number, config: BackendConfig, address: string, healthUp: boolean) {
    this.id = id
    this.name = config.name
    this.host = config.host
    this.port = config.port
    this.weight = config.weight
    this.configWeight = config.weight
    this.backup = config.backup
    this.checkPort = config.checkPort
    this.address = address
    this.healthUp = healthUp
  }

  get state(): BackendState {
    if (this.admin === 'maint') return 'maint'
    if (this.admin === 'drain') return 'drain'
    return this.healthUp ? 'up' : 'down'
  }

  get usable(): boolean {
    return this.admin === 'enabled' && this.healthUp
  }
}

export interface PoolOptions {
  readonly name: string
  readonly balance: string
  readonly backends: readonly BackendConfig[]
  /** Resolved IP for each backend, same order as `backends`. */
  readonly addresses: readonly string[]
  /** Health at start: true when there is no prober (check type none). */
  readonly initiallyUp: boolean
}

type Listener = (change: StateChange) => void
type PassiveListener = (backend: Backend, error: string) => void

export class Pool {
  readonly name: string
  readonly backends: readonly Backend[]
  /** Live active-connection counts by backend id; the data path increments, pickers read. */
  readonly active: Int32Array
  readonly #algorithm: Algorithm
  #picker: Picker
  #pickable: Backend[] = []
  #usableCount = 0
  #usingBackups = false
  readonly #listeners: Listener[] = []
  readonly #passiveListeners: PassiveListener[] = []
  /**
   * The pool a reload or DNS refresh built from this one. Connections outlive the pool they were
   * picked from; their bytes are counted on the successor's backend of the same name, so a
   * backend's byte counters never go backwards across a reload.
   */
  #successor: Pool | undefined

  constructor(options: PoolOptions) {
    const algorithm = resolveAlgorithm(options.balance)
    if (!algorithm) throw new Error(`unknown balance algorithm ${options.balance}`)
    this.#algorithm = algorithm
    this.name = options.name
    this.backends = options.backends.map((b, i) => new Backend(i, b, options.addresses[i] ?? b.host, options.initiallyUp))
    this.active = new Int32Array(this.backends.length)
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

  /**
   * Picks a backend for a connection whose key hashes to `hash`. `tried` holds ids of backends
   * that already failed for this connection. Returns undefined when nothing is usable.
   */
  pick(hash: number, tried?: ReadonlySet<number> | null): Backend | undefined {
    const pickable = this.#pickable
    let exclude: Set<number> | null = null
    if (tried && tried.size > 0) {
      exclude = new Set()
      for (let i = 0; i < pickable.length; i++) if (tried.has(pickable[i]!.id)) exclude.add(i)
    }
    let index = this.#picker.pick(hash, exclude)
    if (index < 0) return undefined
    // Steer around a backend that refused a moment ago, but never refuse a client for it:
    // if it is the only choice left, it is still tried.
    const avoidUntil = pickable[index]!.avoidUntil
    if (avoidUntil !== 0 && avoidUntil > Date.now()) {
      exclude ??= new Set()
      const now = Date.now()
      for (let i = 0; i < pickable.length; i++) if (pickable[i]!.avoidUntil > now) exclude.add(i)
      const other = this.#picker.pick(hash, exclude)
      if (other >= 0) index = other
    }
    return pickable[index]
  }

  connectionOpened(backend: Backend): void {
    this.active[backend.id]!++
    backend.connectionsTotal++
  }

  connectionClosed(backend: Backend, bytesFromClient: number, bytesFromBackend: number): void {
    this.active[backend.id]!--
    const counted = this.#successor === undefined ? backend : this.#latest(backend)
    counted.bytesFromClients += bytesFromClient
    counted.bytesFromBackend += bytesFromBackend
  }

  /** The backend of the same name in the newest pool built from this one (itself if none). */
  #latest(backend: Backend): Backend {
    let latest = backend
    for (let next = this.#successor; next !== undefined; next = next.#successor) latest = next.byName(backend.name) ?? latest
    return latest
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
    const backend = this.backends[backendId]
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

  /** Applies a health event from the prober. */
  setHealth(backendId: number, up: boolean, reason: string, lastError?: string): void {
    const backend = this.backends[backendId]
    if (!backend || backend.healthUp === up) return
    this.#change(backend, reason, lastError, () => {
      backend.healthUp = up
    })
  }

  /** Applies an operator's drain / maint / enable. */
  setAdmin(backendId: number, admin: AdminState, reason = `admin ${admin}`): void {
    const backend = this.backends[backendId]
    if (!backend || backend.admin === admin) return
    this.#change(backend, reason, undefined, () => {
      backend.admin = admin
    })
  }

  /**
   * An operator's weight (admin API), kept until the next reload builds the pool from config.
   * Like every change that alters picks, it goes through a picker rebuild.
   */
  setWeight(backendId: number, weight: number): void {
    const backend = this.backends[backendId]
    if (!backend || backend.weight === weight) return
    backend.weight = weight
    this.#picker = this.#rebuild()
  }

  /**
   * Reload: carries health, admin state and counters over from the previous pool's backends of
   * the same name, so a reload neither resets metrics nor re-checks a backend from scratch.
   * `keepWeights` (a DNS refresh, not a reload) also keeps weights an operator set.
   */
  inherit(previous: Pool, keepWeights = false): void {
    previous.#successor = this
    for (const b of this.backends) {
      const old = previous.byName(b.name)
      if (!old) continue
      if (keepWeights && old.weight !== old.configWeight) b.weight = old.weight
      b.healthUp = old.healthUp
      b.admin = old.admin
      b.lastChangeAt = old.lastChangeAt
      b.lastReason = old.lastReason
      b.lastError = old.lastError
      b.connectionsTotal = old.connectionsTotal
      b.connectErrorsTotal = old.connectErrorsTotal
      b.bytesFromClients = old.bytesFromClients
      b.bytesFromBackend = old.bytesFromBackend
      b.checkDurationCounts.set(old.checkDurationCounts)
      b.checkDurationSumMs = old.checkDurationSumMs
      for (const [k, v] of old.connectErrors) b.connectErrors.set(k, v)
    }
    this.#picker = this.#rebuild()
  }

  #change(backend: Backend, reason: string, lastError: string | undefined, mutate: () => void): void {
    const from = backend.state
    mutate()
    const to = backend.state
    backend.lastChangeAt = Date.now()
    backend.lastReason = reason
    backend.lastError = lastError
    this.#picker = this.#rebuild()
    if (from === to) return
    const change: StateChange = { pool: this.name, backend, from, to, reason, lastError }
    for (const l of this.#listeners) l(change)
  }

  #rebuild(): Picker {
    let pickable = this.backends.filter((b) => b.usable && !b.backup)
    this.#usingBackups = false
    if (pickable.length === 0) {
      pickable = this.backends.filter((b) => b.usable && b.backup)
      this.#usingBackups = pickable.length > 0
    }
    this.#pickable = pickable
    this.#usableCount = pickable.length
    const entries: BalanceEntry[] = pickable.map((b) => ({ name: b.name, weight: b.weight, slot: b.id }))
    return this.#algorithm.createPicker(entries, this.active)
  }
}
