/**
 * The one registry of check types (as lib/balance/index.ts is for algorithms): each type
 * validates its own settings and runs one check. Config validates `health.type` against these
 * keys and calls `validate`; the prober calls `run`. Adding a check type is one file, one line
 * here and one test file.
 */
import type { Clock } from './clock.js'
import { httpCheck } from './http-check.js'
import type { ResolvedCheckOptions } from './options.js'
import { sendExpectCheck } from './send-expect-check.js'
import { tcpCheck } from './tcp-check.js'
import { udpCheck } from './udp-check.js'

export interface CheckTarget {
  /** The pool's backend id; events and lookups use it. */
  readonly id: number
  /** Canonical `host:port`; a reload keeps a target's state only when id and name persist. */
  readonly name: string
  /** An address resolved at load (no DNS per check); a host name works but is looked up each time. */
  readonly host: string
  readonly port: number
  readonly family?: 4 | 6
  /**
   * Where this target's counter starts when the prober first sees it, instead of the options'
   * initial state: a backend that was already serving when a reload changed its check settings
   * starts 'up', so it is not taken out of rotation by the reconfiguration itself.
   */
  readonly initial?: 'up' | 'down'
}

export interface CheckResult {
  /** When the check started (epoch ms). */
  readonly at: number
  readonly durationMs: number
  readonly ok: boolean
  /** 'ECONNREFUSED', 'timeout', 'reply timeout', 'expect mismatch: got "X"', 'http status 503', … */
  readonly error?: string
  /** Set on data-path connect failures reported through observePassive. */
  readonly passive?: true
}

/** One check in flight. `done` settles only after the socket has closed, never rejects. */
export interface RunningCheck {
  readonly done: Promise<CheckResult>
  /** Destroys the socket; `done` then settles with error 'cancelled'. */
  cancel(): void
}

/** The prober calls this per check; tests may substitute a fake. */
export type CheckRunner = (target: CheckTarget, options: ResolvedCheckOptions, clock: Clock) => RunningCheck

/** The settings a check type may need, named as in the config file's `health` mapping. */
export interface CheckSpec {
  readonly send: Buffer | undefined
  readonly expect: readonly Buffer[] | undefined
  readonly httpPath: string
  readonly httpStatus: string
}

/** `key` is the config key (`health.<key>`, `check.<key>` for the prober's own callers). */
export interface CheckProblem {
  readonly key: keyof CheckSpec
  readonly value: unknown
  readonly problem: string
}

export interface CheckKind {
  /** Problems with this type's own settings; the others are ignored (they do not apply). */
  validate(spec: CheckSpec): CheckProblem[]
  run: CheckRunner
}

/** `none`: every backend is up; the prober schedules nothing, so `run` is never called. */
const noCheck: CheckKind = {
  validate: () => [],
  run: (_target, _options, clock) => ({ done: Promise.resolve({ at: clock.now(), durationMs: 0, ok: true }), cancel() {} }),
}

export const checks = {
  tcp: tcpCheck,
  'send-expect': sendExpectCheck,
  http: httpCheck,
  udp: udpCheck,
  none: noCheck,
} satisfies Record<string, CheckKind>

export type CheckType = keyof typeof checks

/** Every type `--check` and `health.type` accept, in registry order. */
export const CHECK_TYPES = Object.keys(checks) as readonly CheckType[]

export function isCheckType(name: unknown): name is CheckType {
  return typeof name === 'string' && Object.hasOwn(checks, name)
}

/** Runs one check of the options' type: the prober's one door to the registry. */
export const startCheck: CheckRunner = (target, options, clock) => checks[options.type].run(target, options, clock)

/** Runs one check outside any prober. */
export function checkOnce(target: CheckTarget, options: ResolvedCheckOptions, clock: Clock): Promise<CheckResult> {
  return startCheck(target, options, clock).done
}
