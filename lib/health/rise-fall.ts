/**
 * HAProxy's rise/fall as one counter (include/haproxy/check-t.h, src/check.c
 * `check_notify_*` and `srv_set_init_state`), kept pure so a table test can pin it.
 *
 * `health` runs 0..rise+fall-1 and the target is up when `health >= rise`:
 *  - a failure decrements it, and once it drops below `rise` it snaps to 0: a target that just
 *    went down needs `rise` passes in a row to come back;
 *  - a pass increments it, and once it reaches `rise` it snaps to the top (rise+fall-1): a
 *    target that just came up needs `fall` failures in a row to go down.
 * So one opposite result between thresholds resets the run, which is what operators expect
 * from "fall 3": three *consecutive* failures. An alternating sequence never changes state.
 */

export interface RiseFall {
  /** Consecutive passes that bring a down target up (>= 1). */
  readonly rise: number
  /** Consecutive failures that take an up target down (>= 1). */
  readonly fall: number
}

export interface StepResult {
  readonly health: number
  /** True when up-ness flipped on this result. */
  readonly changed: boolean
}

/**
 * Where the counter starts, named as HAProxy's `init-state` (configuration.txt):
 *  - 'fully-up': up, needs `fall` failures to go down
 *  - 'up': up, the first failure takes it down (HAProxy's behaviour without init-state)
 *  - 'down': down, the first pass brings it up
 *  - 'fully-down': down, needs `rise` passes to come up
 * The prober's 'first-check' state starts the counter as 'down' (see prober.ts).
 */
export type CounterStart = 'fully-up' | 'up' | 'down' | 'fully-down'

export function maxHealth(limits: RiseFall): number {
  return limits.rise + limits.fall - 1
}

export function isUp(health: number, limits: RiseFall): boolean {
  return health >= limits.rise
}

export function initialHealth(start: CounterStart, limits: RiseFall): number {
  switch (start) {
    case 'fully-up':
      return maxHealth(limits)
    case 'up':
      return limits.rise
    case 'down':
      return limits.rise - 1
    case 'fully-down':
      return 0
  }
}

/** Applies one check result to the counter (HAProxy `set_server_check_status`). */
export function step(health: number, ok: boolean, limits: RiseFall): StepResult {
  const top = maxHealth(limits)
  const wasUp = health >= limits.rise
  let next = health
  if (ok) {
    if (next < top) {
      next++
      if (next >= limits.rise) next = top
    }
  } else if (next > 0) {
    next--
    if (next < limits.rise) next = 0
  }
  return { health: next, changed: wasUp !== next >= limits.rise }
}

/**
 * True while the counter sits between its resting points: an up target that has started
 * failing, a down target that has started passing, or one never checked. HAProxy uses
 * `fastinter` in exactly these cases (`srv_getinter` in src/server.c).
 */
export function isTransitional(health: number, limits: RiseFall): boolean {
  return health !== 0 && health !== maxHealth(limits)
}
