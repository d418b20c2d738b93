/**
 * Glue between a service's pool and its prober: targets from backends, events into the pool,
 * data-path connect failures into the prober, maint pauses probing. The prober never touches
 * the data path; the data path never waits for the prober.
 *
 * One ServiceHealth lives as long as its service (issue 12): a reload or DNS change hands the
 * prober the new targets, so counters, flap history and /status history survive; only a change
 * of the check settings themselves builds a new prober, seeded with the states backends had.
 */
import { Prober, startCheck, type CheckOptions, type CheckRunner, type CheckTarget, type HealthEvent } from '../health/index.js'
import type { HealthConfig } from '../config/index.js'
import type { Pool, StateChange } from '../pool/index.js'
import { encodeV2 } from '../proxy-protocol/index.js'
import { customCheckRunner, type HealthCheck } from '../health/custom.js'
import type { Algorithm } from '../balance/index.js'

/**
 * What an embedding program added (lib/api's Registry): algorithms and check types by name.
 * Passed to Runtime.start and kept by the runtime object, never stored module-wide.
 */
export interface Extensions {
  algorithm(name: string): Algorithm | undefined
  check(name: string): HealthCheck | undefined
}

/** PROXY v2 LOCAL over UNSPEC, no addresses: the spec's header for a balancer's own checks. */
const PROXY_V2_LOCAL = encodeV2({ command: 'local', transport: 'stream' })

export function checkOptions(health: HealthConfig): CheckOptions {
  return {
    type: health.type,
    intervalMs: health.intervalMs,
    timeoutMs: health.timeoutMs,
    rise: health.rise,
    fall: health.fall,
    fastIntervalMs: health.fastIntervalMs,
    downIntervalMs: health.downIntervalMs,
    send: health.send,
    expect: health.expect,
    httpPath: health.httpPath,
    httpStatus: health.httpStatus,
    sendProxyLocal: health.sendProxy ? PROXY_V2_LOCAL : undefined,
    flap: health.flapDamping,
    initialState: 'first-check',
  }
}

/**
 * The pool's current backends as check targets. With `seed`, a backend already decided starts
 * where it is (see CheckTarget.initial); a starting one waits for its first check as usual.
 */
export function checkTargets(pool: Pool, health: HealthConfig, seed = false): CheckTarget[] {
  // An unresolved backend has no address to probe; the refresh that resolves it adds a new one.
  return pool.backends.filter((b) => !b.unresolved).map((b) => ({
    id: b.id,
    name: b.name,
    host: b.address,
    port: b.checkPort ?? health.port ?? b.port,
    ...(seed && !b.starting && { initial: b.healthUp ? ('up' as const) : ('down' as const) }),
  }))
}

export class ServiceHealth {
  readonly #pool: Pool
  #prober: Prober | undefined
  /** The settings the prober was built with: a reload with the same ones keeps it. */
  #settings = ''
  /** Backends whose first check is still due, and who to tell when there are none. */
  #pending = new Set<number>()
  #firstRoundDone: (() => void) | undefined

  readonly #extensions: Extensions | undefined

  constructor(pool: Pool, extensions?: Extensions) {
    this.#pool = pool
    this.#extensions = extensions
    pool.onPassiveFailure((backend, error) => this.#prober?.observePassive(backend.id, false, error))
    pool.onStateChange((change: StateChange) => {
      if (change.to === 'maint') this.#prober?.pause(change.backend.id)
      else if (change.from === 'maint') this.#prober?.resume(change.backend.id)
    })
  }

  get prober(): Prober | undefined {
    return this.#prober
  }

  /**
   * Starts probing, or applies new settings and targets (reload, DNS change). Resolves once
   * every backend new to the prober has had its first check (or after one check timeout plus
   * the first check's jitter), so listeners open with a known state.
   */
  async apply(health: HealthConfig): Promise<void> {
    if (health.type === 'none') {
      await this.stop()
      return
    }
    const settings = JSON.stringify(checkOptions(health)) + `|${health.port ?? ''}`
    const before = new Set(this.#pool.backends.filter((b) => !b.starting).map((b) => b.id))
    if (this.#prober && settings === this.#settings) {
      this.#prober.setTargets(checkTargets(this.#pool, health))
    } else {
      const old = this.#prober
      this.#prober = undefined
      await old?.stop()
      this.#settings = settings
      // A rebuilt prober keeps what the old one had decided; the very first one has nothing.
      // A registered check runs through the prober's CheckRunner door with the same rise/fall
      // and timing options; 'tcp' only stands in for its type while those are resolved.
      const custom = this.#extensions?.check(health.type)
      const options = custom ? { ...checkOptions(health), type: 'tcp' as const } : checkOptions(health)
      const prober = new Prober(options, checkTargets(this.#pool, health, old !== undefined), this.#onEvent, { runCheck: timedChecks(this.#pool, custom ? customCheckRunner(custom) : startCheck) })
      this.#prober = prober
      prober.start()
    }
    this.#pending = new Set(this.#pool.backends.filter((b) => b.starting && !before.has(b.id)).map((b) => b.id))
    if (this.#pending.size === 0) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      new Promise<void>((resolve) => (this.#firstRoundDone = resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, health.timeoutMs + health.intervalMs * 0.1 + 250))),
    ])
    clearTimeout(timer)
    this.#firstRoundDone = undefined
  }

  async stop(): Promise<void> {
    const prober = this.#prober
    this.#prober = undefined
    this.#settings = ''
    await prober?.stop()
  }

  readonly #onEvent = (event: HealthEvent): void => {
    if (this.#prober === undefined) return
    if (event.to === 'starting') this.#pool.setStarting(event.backendId, event.reason)
    else this.#pool.setHealth(event.backendId, event.up, event.reason, event.lastError)
    if (event.from === 'starting' && this.#pending.delete(event.backendId) && this.#pending.size === 0) this.#firstRoundDone?.()
  }
}

/** The real checks, each one's duration handed to the pool (the check-duration histogram). */
function timedChecks(pool: Pool, run: CheckRunner): CheckRunner {
  return (target, options, clock) => {
    const running = run(target, options, clock)
    // A check cut short by stop or maintenance says nothing about the backend.
    void running.done.then((result) => {
      if (result.error !== 'cancelled') pool.observeCheck(target.id, result.durationMs)
    })
    return running
  }
}
