/**
 * The health prober: schedules TCP / send-expect / HTTP checks with HAProxy's rise/fall
 * semantics and reports state changes as events. It owns no data-path socket and knows
 * nothing of pools or the CLI: the pool feeds it targets and passive observations, and
 * applies its events.
 */
export { Prober, HISTORY_SIZE } from './prober.js'
export type { HealthEvent, HealthListener, HealthState, ProberDeps, TargetStatus } from './prober.js'
export { checks, startCheck, checkOnce, CHECK_TYPES, isCheckType } from './checks.js'
export type { CheckKind, CheckProblem, CheckResult, CheckRunner, CheckSpec, CheckTarget, RunningCheck } from './checks.js'
export { quoteBytes, MAX_REPLY_BYTES } from './stream-check.js'
export { parseExpectStatus } from './http-check.js'
export { resolveCheckOptions, CHECK_DEFAULTS } from './options.js'
export type { CheckOptions, CheckType, ExpectMatch, FlapDamping, InitialState, ResolvedCheckOptions } from './options.js'
export { step, initialHealth, isUp, isTransitional, maxHealth } from './rise-fall.js'
export type { CounterStart, RiseFall, StepResult } from './rise-fall.js'
export { realClock } from './clock.js'
export type { Clock, TimerHandle } from './clock.js'
