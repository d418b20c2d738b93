/**
 * One backend of a pool: its identity, the settings its config gave, health and admin state,
 * and the counters the data path and the prober feed. State changes go through the pool (its
 * one door); the counters are bumped in place.
 */
import type { BackendConfig } from '../config/index.js'

/** Operator-set state; `enabled` defers to health. */
export type AdminState = 'enabled' | 'drain' | 'maint'
/**
 * What operators see: health unless an admin state overrides it. `starting` is a checked
 * backend whose first check has not decided yet: neither up nor down, and it takes no traffic.
 */
export type BackendState = 'up' | 'down' | 'starting' | 'drain' | 'maint'
export const BACKEND_STATES: readonly BackendState[] = ['up', 'down', 'starting', 'drain', 'maint']

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
