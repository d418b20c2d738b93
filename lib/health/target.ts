/**
 * One target's health as the prober keeps it, and the pure rules that move it: HAProxy's
 * rise/fall counter (rise-fall.ts), the reported state, flap damping, the check interval and
 * the reasons events carry. The prober (prober.ts) owns timers, sockets and events.
 */
import type { TimerHandle } from './clock.js'
import type { CheckResult, CheckTarget, RunningCheck } from './checks.js'
import type { ResolvedCheckOptions } from './options.js'
import { initialHealth, maxHealth, step } from './rise-fall.js'

/** 'starting': not yet checked under initialState 'first-check'; not usable. */
export type HealthState = 'starting' | 'up' | 'down'

export const HISTORY_SIZE = 10

export interface TargetHealth {
  target: CheckTarget
  health: number
  state: HealthState
  paused: boolean
  timer: TimerHandle | null
  nextCheckAt: number | null
  running: RunningCheck | null
  /** Ring buffer: `historyNext` is where the next result goes. */
  history: CheckResult[]
  historyNext: number
  // The current run, for reasons: reset by an opposite result.
  passedChecks: number
  failedChecks: number
  passiveFailures: number
  lastError: string | undefined
  /** up↔down transition times within flap.windowMs. */
  transitions: number[]
  holdSince: number | null
  holdTransitions: number
}

export function freshTarget(target: CheckTarget, options: ResolvedCheckOptions): TargetHealth {
  const t: TargetHealth = {
    target,
    health: 0,
    state: 'starting',
    paused: false,
    timer: null,
    nextCheckAt: null,
    running: null,
    history: [],
    historyNext: 0,
    passedChecks: 0,
    failedChecks: 0,
    passiveFailures: 0,
    lastError: undefined,
    transitions: [],
    holdSince: null,
    holdTransitions: 0,
  }
  resetTarget(t, options)
  if (target.initial !== undefined) {
    t.health = initialHealth(target.initial, options)
    t.state = target.initial
  }
  return t
}

export function resetTarget(t: TargetHealth, options: ResolvedCheckOptions): void {
  const initial = options.initialState
  // 'first-check' starts the counter where HAProxy's init-state 'down' does (rise-1): one
  // pass brings it up; a failure drops it to 0, then `rise` passes are needed.
  t.health = initialHealth(initial === 'first-check' ? 'down' : initial, options)
  t.state = initial === 'first-check' ? 'starting' : t.health >= options.rise ? 'up' : 'down'
  t.passedChecks = 0
  t.failedChecks = 0
  t.passiveFailures = 0
  t.holdSince = null
}

/** Applies one result to the counter and the reported state; returns an event reason on a change. */
export function applyResult(t: TargetHealth, ok: boolean, passive: boolean, now: number, options: ResolvedCheckOptions): string | null {
  if (ok) {
    t.passedChecks++
    t.failedChecks = 0
    t.passiveFailures = 0
  } else {
    t.passedChecks = 0
    if (passive) t.passiveFailures++
    else t.failedChecks++
  }

  // A failure during a flap hold ends it: the target did not keep passing.
  if (!ok && t.holdSince !== null) {
    t.holdSince = null
    t.health = 0
    return null
  }
  t.health = step(t.health, ok, options).health
  const counterUp = t.health >= options.rise

  if (t.state === 'starting') {
    t.state = counterUp ? 'up' : 'down'
    if (ok) return 'first check passed'
    return passive ? `data-path connect failure before the first check (${t.lastError})` : `first check failed (${t.lastError})`
  }
  if (t.state === 'up' && !counterUp) {
    t.state = 'down'
    noteTransition(t, now, options)
    return downReason(t)
  }
  if (t.state === 'down' && counterUp) {
    const flap = options.flap
    if (flap && t.holdSince === null) {
      prune(t.transitions, now - flap.windowMs)
      if (t.transitions.length > flap.maxTransitions) {
        t.holdSince = now
        t.holdTransitions = t.transitions.length
        return null
      }
    }
    if (flap && t.holdSince !== null) {
      if (now - t.holdSince < flap.holdMs) return null
      const heldMs = Math.round(now - t.holdSince)
      t.holdSince = null
      t.state = 'up'
      noteTransition(t, now, options)
      return `${t.passedChecks} consecutive passed checks over a ${heldMs} ms flap hold (${t.holdTransitions} transitions in ${flap.windowMs} ms)`
    }
    t.state = 'up'
    noteTransition(t, now, options)
    return run(t.passedChecks, 'passed check')
  }
  return null
}

function downReason(t: TargetHealth): string {
  const last = `(last: ${t.lastError})`
  if (t.passiveFailures === 0) return `${run(t.failedChecks, 'failed check')} ${last}`
  if (t.failedChecks === 0) return `${run(t.passiveFailures, 'data-path connect failure')} ${last}`
  return (
    `${t.failedChecks + t.passiveFailures} consecutive failures: ${t.failedChecks} ${plural(t.failedChecks, 'failed check')}, ` +
    `${t.passiveFailures} ${plural(t.passiveFailures, 'data-path connect failure')} ${last}`
  )
}

function noteTransition(t: TargetHealth, now: number, options: ResolvedCheckOptions): void {
  const flap = options.flap
  if (!flap) return
  prune(t.transitions, now - flap.windowMs)
  t.transitions.push(now)
}

/** HAProxy `srv_getinter`: inter when steadily up, downinter when steadily down, else fastinter. */
export function intervalFor(t: TargetHealth, now: number, options: ResolvedCheckOptions): number {
  if (t.state === 'up' && t.health === maxHealth(options)) return options.intervalMs
  if (t.state === 'down' && t.health === 0) return options.downIntervalMs
  if (t.holdSince !== null && options.flap) {
    // Check again right when the hold ends so the up transition isn't late by an interval.
    return Math.max(0, Math.min(options.fastIntervalMs, t.holdSince + options.flap.holdMs - now))
  }
  return options.fastIntervalMs
}

export function record(t: TargetHealth, result: CheckResult): void {
  t.history[t.historyNext] = result
  t.historyNext = (t.historyNext + 1) % HISTORY_SIZE
}

export function ordered(t: TargetHealth): CheckResult[] {
  if (t.history.length < HISTORY_SIZE) return t.history.slice()
  return [...t.history.slice(t.historyNext), ...t.history.slice(0, t.historyNext)]
}

/** Drops times older than `since` from the front of an ascending list. */
function prune(times: number[], since: number): void {
  let i = 0
  while (i < times.length && (times[i] as number) <= since) i++
  if (i > 0) times.splice(0, i)
}

/** '1 failed check', '3 consecutive failed checks'. */
function run(n: number, noun: string): string {
  return n === 1 ? `1 ${noun}` : `${n} consecutive ${noun}s`
}

function plural(n: number, noun: string): string {
  return n === 1 ? noun : `${noun}s`
}
