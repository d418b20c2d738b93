/**
 * Slow start (HAProxy's `slowstart`, src/server.c server_recalc_eweight): weights are scaled by
 * up to WEIGHT_SCALE (HAProxy's BE_WEIGHT_SCALE is 16) so a weight-1 backend can ramp in steps;
 * the scale is fixed for the pool (never only during a ramp), so hashing tables do not move when
 * a ramp starts or ends. The picker is rebuilt at most RAMP_STEPS times per ramp, never per
 * connection, and no more often than MIN_RAMP_STEP_MS.
 */
import { MAX_WEIGHT } from '../balance/index.js'
import type { Backend } from './backend.js'

export const WEIGHT_SCALE = 16
export const RAMP_STEPS = 32
export const MIN_RAMP_STEP_MS = 100

/** Time for slow start; injectable so tests run the ramp on a fake clock. */
export interface PoolClock {
  now(): number
  setTimeout(fn: () => void, delayMs: number): unknown
  clearTimeout(handle: unknown): void
}

export const realClock: PoolClock = {
  now: () => Date.now(),
  setTimeout(fn, delayMs) {
    const timer = setTimeout(fn, delayMs)
    timer.unref()
    return timer
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

/**
 * A pool's ramps: the weight scale, when each backend's ramp began (`Backend.rampStartedAt`)
 * and the one timer that steps them. `backends` is read at every step because an update
 * replaces the pool's list; `step` rebuilds the pickers (a no-op when no weight moved).
 */
export class SlowStart {
  readonly clock: PoolClock
  readonly #backends: () => readonly Backend[]
  readonly #step: () => void
  #durationMs = 0
  #weightScale = 1
  #timer: unknown = undefined

  constructor(clock: PoolClock, backends: () => readonly Backend[], step: () => void) {
    this.clock = clock
    this.#backends = backends
    this.#step = step
  }

  /**
   * Sets the ramp length (0 = off) and the weight scale for the current backends. Returns
   * true when the scale changed: every effective weight moved, so pickers build from scratch.
   */
  configure(durationMs: number): boolean {
    this.#durationMs = durationMs
    // As large as HAProxy's scale while the heaviest weight stays within the balancers' range.
    const heaviest = Math.max(1, ...this.#backends().map((b) => b.weight))
    const scale = durationMs > 0 ? Math.max(1, Math.min(WEIGHT_SCALE, Math.floor(MAX_WEIGHT / heaviest))) : 1
    const changed = scale !== this.#weightScale
    this.#weightScale = scale
    if (durationMs === 0) for (const b of this.#backends()) b.rampStartedAt = 0
    return changed
  }

  /** `backend` just became usable and should ramp (when slow start is on). */
  begin(backend: Backend): void {
    if (this.#durationMs === 0) return
    backend.rampStartedAt = this.clock.now()
    this.#schedule()
  }

  /**
   * A backend's weight for the picker: its weight times the pool's scale, or during a ramp the
   * share of that reached so far (at least 1, so it starts at once, at the smallest step, as
   * HAProxy's does). A finished ramp is cleared here.
   */
  effectiveWeight(b: Backend, now: number): number {
    const full = b.weight * this.#weightScale
    if (b.rampStartedAt === 0) return full
    const elapsed = now - b.rampStartedAt
    if (elapsed >= this.#durationMs || elapsed < 0) {
      b.rampStartedAt = 0
      return full
    }
    return Math.max(1, Math.ceil((full * elapsed) / this.#durationMs))
  }

  /** One timer per pool while any backend ramps: each tick rebuilds only if a weight moved. */
  #schedule(): void {
    if (this.#timer !== undefined) return
    const stepMs = Math.max(MIN_RAMP_STEP_MS, Math.ceil(this.#durationMs / RAMP_STEPS))
    // The last step lands when the first ramp ends, not up to a step later.
    const delay = (): number => {
      let next = stepMs
      for (const b of this.#backends()) if (b.rampStartedAt !== 0) next = Math.min(next, b.rampStartedAt + this.#durationMs - this.clock.now())
      return Math.max(1, next)
    }
    const tick = (): void => {
      this.#timer = undefined
      this.#step()
      if (this.#backends().some((b) => b.rampStartedAt !== 0)) this.#timer = this.clock.setTimeout(tick, delay())
    }
    this.#timer = this.clock.setTimeout(tick, delay())
  }
}
