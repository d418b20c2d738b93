import { ConfigError } from '../errors.js'
import { realClock, type Clock } from './clock.js'
import { startCheck, type CheckResult, type CheckRunner, type CheckTarget } from './checks.js'
import { resolveCheckOptions, type CheckOptions, type ResolvedCheckOptions } from './options.js'
import { maxHealth } from './rise-fall.js'
import { applyResult, freshTarget, intervalFor, ordered, record, resetTarget, type HealthState, type TargetHealth } from './target.js'

export { HISTORY_SIZE, type HealthState } from './target.js'


/** A change of a target's reported state, for the pool to apply. */
export interface HealthEvent {
  readonly backendId: number
  /** `to === 'up'`: whether the pool may use the backend now. */
  readonly up: boolean
  readonly from: HealthState
  readonly to: HealthState
  /** For people: '3 consecutive failed checks (last: ECONNREFUSED)', '2 consecutive passed checks'. */
  readonly reason: string
  readonly lastError?: string
}

/** One target as the status API shows it. */
export interface TargetStatus {
  readonly id: number
  readonly name: string
  readonly state: HealthState
  readonly up: boolean
  /** In maintenance: not probed (pause/resume). */
  readonly paused: boolean
  /** HAProxy's counter, 0..rise+fall-1; up when >= rise (before flap hold). */
  readonly health: number
  readonly rise: number
  readonly fall: number
  readonly consecutivePassed: number
  readonly consecutiveFailed: number
  readonly lastError?: string
  readonly nextCheckAt?: number
  /** Flap damping: passing checks hold the up transition until then. */
  readonly heldUntil?: number
  /** Oldest first, at most HISTORY_SIZE. */
  readonly history: readonly CheckResult[]
}

export interface ProberDeps {
  clock?: Clock
  /** Substitute for the socket checks (scheduler tests). */
  runCheck?: CheckRunner
}

export type HealthListener = (event: HealthEvent) => void


/**
 * Schedules health checks for a set of targets and reports state changes as events. Data in
 * (targets, check results, passive observations), events out; it knows nothing of pools or
 * the data path's sockets.
 *
 * State rules (README "Health checks"):
 * - rise/fall is HAProxy's counter (rise-fall.ts). Passive failures (observePassive(id, false))
 *   count toward `fall` exactly like failed checks and bring the next check forward to
 *   fastIntervalMs. Passive successes never count toward `rise` — only the prober brings a
 *   target back — but on an up target they end a failure run, as a passed check would.
 * - Initial state: see `InitialState`; under 'first-check' the first result decides at once.
 * - Flap damping: see `FlapDamping`.
 */
export class Prober {
  readonly #options: ResolvedCheckOptions
  readonly #onEvent: HealthListener
  readonly #clock: Clock
  readonly #runCheck: CheckRunner
  #targets = new Map<number, TargetHealth>()
  /** Every check still holding a socket, including those of removed or paused targets. */
  readonly #inFlight = new Set<Promise<CheckResult>>()
  #started = false

  constructor(options: CheckOptions, targets: readonly CheckTarget[], onEvent: HealthListener, deps: ProberDeps = {}) {
    this.#options = resolveCheckOptions(options)
    this.#onEvent = onEvent
    this.#clock = deps.clock ?? realClock
    this.#runCheck = deps.runCheck ?? startCheck
    this.setTargets(targets)
  }

  get options(): ResolvedCheckOptions {
    return this.#options
  }

  start(): void {
    if (this.#started) return
    this.#started = true
    if (this.#options.type === 'none') return
    for (const t of this.#targets.values()) this.#scheduleFirst(t)
  }

  /** Cancels timers and in-flight checks; resolves once every check socket has closed. */
  async stop(): Promise<void> {
    this.#started = false
    for (const t of this.#targets.values()) this.#halt(t)
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight])
  }

  /**
   * Reload: a target whose id and name both persist keeps its health, history and flap record
   * (its host/port are taken from the new entry); any other target starts afresh in the
   * initial state. Removed targets stop being probed. No events are emitted: read isUp().
   */
  setTargets(targets: readonly CheckTarget[]): void {
    const next = new Map<number, TargetHealth>()
    for (const target of targets) {
      if (next.has(target.id)) throw new ConfigError('targets', target.id, 'duplicate backend id')
      const old = this.#targets.get(target.id)
      if (old && old.target.name === target.name) {
        old.target = target
        next.set(target.id, old)
      } else {
        next.set(target.id, freshTarget(target, this.#options))
      }
    }
    for (const [id, old] of this.#targets) {
      if (next.get(id) !== old) this.#halt(old)
    }
    this.#targets = next
    if (this.#started && this.#options.type !== 'none') {
      for (const t of next.values()) if (t.timer === null && t.running === null && !t.paused) this.#scheduleFirst(t)
    }
  }

  /** Maintenance: stop probing `id` (an in-flight check is cancelled); its state is frozen. */
  pause(id: number): void {
    const t = this.#targets.get(id)
    if (!t || t.paused) return
    t.paused = true
    this.#halt(t)
  }

  /**
   * Leaving maintenance re-applies the initial state and checks at once, as HAProxy does
   * (src/server.c, `_srv_update_status_adm`): whatever held before maintenance is stale.
   */
  resume(id: number): void {
    const t = this.#targets.get(id)
    if (!t || !t.paused) return
    t.paused = false
    if (this.#options.type === 'none') return
    const from = t.state
    resetTarget(t, this.#options)
    if (this.#started) this.#schedule(t, 0)
    if (from !== t.state) {
      const reason = t.state === 'starting' ? 'left maintenance, waiting for the first check' : `left maintenance, initial state ${t.state}`
      this.#emit(t, from, reason)
    }
  }

  /**
   * A data-path connect result (HAProxy `observe layer4`). Failures count toward `fall` like
   * failed checks; successes only end a failure run of an up target. Ignored while paused.
   */
  observePassive(id: number, ok: boolean, error?: string): void {
    const t = this.#targets.get(id)
    if (!t || t.paused) return
    const now = this.#clock.now()
    if (ok) {
      if (this.#options.type !== 'none' && t.state === 'up' && t.health < maxHealth(this.#options)) {
        t.health = maxHealth(this.#options)
        t.failedChecks = 0
        t.passiveFailures = 0
      }
      return
    }
    t.lastError = error ?? 'connect failed'
    if (this.#options.type === 'none') return
    record(t, { at: now, durationMs: 0, ok: false, error: t.lastError, passive: true })
    const from = t.state
    const reason = applyResult(t, false, true, now, this.#options)
    // Like HAProxy's on-error fail-check: a suspect target is re-checked at fastinter.
    if (this.#started && t.running === null && t.nextCheckAt !== null) {
      const delayMs = this.#jitter(intervalFor(t, now, this.#options))
      if (t.nextCheckAt - now > delayMs) this.#schedule(t, delayMs)
    }
    if (reason) this.#emit(t, from, reason)
  }

  isUp(id: number): boolean {
    if (this.#options.type === 'none') return this.#targets.has(id)
    return this.#targets.get(id)?.state === 'up'
  }

  /** The last HISTORY_SIZE results (checks and passive failures), oldest first. */
  history(id: number): readonly CheckResult[] {
    const t = this.#targets.get(id)
    return t ? ordered(t) : []
  }

  snapshot(): readonly TargetStatus[] {
    const none = this.#options.type === 'none'
    const out: TargetStatus[] = []
    for (const t of this.#targets.values()) {
      const status: TargetStatus = {
        id: t.target.id,
        name: t.target.name,
        state: none ? 'up' : t.state,
        up: none || t.state === 'up',
        paused: t.paused,
        health: t.health,
        rise: this.#options.rise,
        fall: this.#options.fall,
        consecutivePassed: t.passedChecks,
        consecutiveFailed: t.failedChecks + t.passiveFailures,
        history: ordered(t),
        ...(t.lastError !== undefined && { lastError: t.lastError }),
        ...(t.nextCheckAt !== null && { nextCheckAt: t.nextCheckAt }),
        ...(t.holdSince !== null && this.#options.flap && { heldUntil: t.holdSince + this.#options.flap.holdMs }),
      }
      out.push(status)
    }
    return out
  }

  /** Cancels the timer and any in-flight check of `t`; its socket is awaited by stop(). */
  #halt(t: TargetHealth): void {
    if (t.timer !== null) this.#clock.clearTimeout(t.timer)
    t.timer = null
    t.nextCheckAt = null
    t.running?.cancel()
    t.running = null
  }

  /**
   * The first check of a target comes within jitterRatio × the interval, so a start with
   * many targets doesn't open every socket on the same tick yet 'first-check' targets become
   * usable quickly.
   */
  #scheduleFirst(t: TargetHealth): void {
    if (t.paused) return
    this.#schedule(t, Math.random() * this.#options.jitterRatio * intervalFor(t, this.#clock.now(), this.#options))
  }

  #schedule(t: TargetHealth, delayMs: number): void {
    if (t.timer !== null) this.#clock.clearTimeout(t.timer)
    t.nextCheckAt = this.#clock.now() + delayMs
    t.timer = this.#clock.setTimeout(() => this.#check(t), delayMs)
  }

  #check(t: TargetHealth): void {
    t.timer = null
    t.nextCheckAt = null
    // A check still running means the timer was re-armed by a passive failure: never overlap.
    if (!this.#started || t.paused || t.running !== null || this.#targets.get(t.target.id) !== t) return
    const running = this.#runCheck(t.target, this.#options, this.#clock)
    t.running = running
    const done = running.done
    this.#inFlight.add(done)
    void done.then((result) => {
      this.#inFlight.delete(done)
      if (t.running !== running) return // cancelled: paused, removed or stopped
      t.running = null
      this.#complete(t, result)
    })
  }

  #complete(t: TargetHealth, result: CheckResult): void {
    const now = this.#clock.now()
    record(t, result)
    if (!result.ok) t.lastError = result.error
    const from = t.state
    const reason = applyResult(t, result.ok, false, now, this.#options)
    // HAProxy measures the interval from the end of a check, so a slow backend is never
    // checked back to back.
    this.#schedule(t, this.#jitter(intervalFor(t, now, this.#options)))
    if (reason) this.#emit(t, from, reason)
  }

  #jitter(delayMs: number): number {
    const ratio = this.#options.jitterRatio
    return delayMs * (1 + ratio * (2 * Math.random() - 1))
  }

  #emit(t: TargetHealth, from: HealthState, reason: string): void {
    const event: HealthEvent = {
      backendId: t.target.id,
      up: t.state === 'up',
      from,
      to: t.state,
      reason,
      // On the way up the last error is history (it stays in snapshot()); don't attach it.
      ...(t.state !== 'up' && t.lastError !== undefined && { lastError: t.lastError }),
    }
    try {
      this.#onEvent(event)
    } catch (err) {
      // The prober's own state is already consistent; surface the listener's bug without
      // unwinding into a socket callback or the data path's observePassive call.
      queueMicrotask(() => {
        throw err
      })
    }
  }
}
