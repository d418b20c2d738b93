import { ConfigError } from '../errors.js'
import { checks, CHECK_TYPES, isCheckType, type CheckType } from './checks.js'
import { parseExpectStatus } from './http-check.js'
import type { CounterStart } from './rise-fall.js'

export { CHECK_TYPES, type CheckType } from './checks.js'
export { MAX_REPLY_BYTES } from './stream-check.js'

/**
 * 'first-check' (default): the target is neither up nor down ('starting', not usable) until its
 * first check; that check decides at once. The other four are HAProxy's `init-state` values.
 */
export type InitialState = 'first-check' | CounterStart

/**
 * How a send-expect reply is matched against `expect`: 'prefix' (default) decides as soon as
 * enough bytes arrived, so a wrong reply is reported as a mismatch and not as a timeout;
 * 'contains' (HAProxy's `tcp-check expect string`) searches the first MAX_REPLY_BYTES.
 */
export type ExpectMatch = 'prefix' | 'contains'

/**
 * Flap damping (l4lb's own rule; HAProxy has only rise/fall): when a target changed state more
 * than `maxTransitions` times within the last `windowMs`, its next down→up transition also
 * requires it to keep passing for `holdMs` after reaching `rise`.
 */
export interface FlapDamping {
  maxTransitions: number
  windowMs: number
  holdMs: number
}

export interface CheckOptions {
  type: CheckType
  /** Between checks of a steady up target. Default 2000 (HAProxy `inter`). */
  intervalMs?: number
  /** Connect plus reply, per check. Default 1000. */
  timeoutMs?: number
  /** Default 2. */
  rise?: number
  /** Default 3. */
  fall?: number
  /** HAProxy `fastinter`: while the counter is between thresholds or unchecked. Default intervalMs. */
  fastIntervalMs?: number
  /** HAProxy `downinter`: while steadily down. Default intervalMs. */
  downIntervalMs?: number
  /** Probe this port instead of the backend's. */
  port?: number
  /** send-expect: bytes written after connecting; absent for protocols that greet first. */
  send?: Buffer
  /** send-expect: the reply must match one of these (PostgreSQL SSLRequest: 'S' or 'N'). */
  expect?: Buffer | readonly Buffer[]
  /** Default 'prefix'. */
  expectMatch?: ExpectMatch
  /** http: request path. Default '/'. */
  httpPath?: string
  /** http: accepted statuses, comma-separated codes or classes: '2xx' (default), '200,204'. */
  httpStatus?: string
  /** Written first on every check connection (a PROXY v2 LOCAL header) when backends require it. */
  sendProxyLocal?: Buffer
  /** Each delay is spread by ±ratio so backends don't get checked in lockstep. Default 0.1. */
  jitterRatio?: number
  /** Off unless given. */
  flap?: FlapDamping
  /** Default 'first-check'. */
  initialState?: InitialState
}

/** Options after defaults and validation; built once per Prober. */
export interface ResolvedCheckOptions {
  readonly type: CheckType
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly rise: number
  readonly fall: number
  readonly fastIntervalMs: number
  readonly downIntervalMs: number
  readonly port: number | null
  /** send-expect: what a check writes (empty: the backend greets first). */
  readonly send: Buffer
  /** udp: sendProxyLocal and send joined once, so a check is one datagram. */
  readonly sendBytes: Buffer
  readonly expect: readonly Buffer[]
  readonly expectMatch: ExpectMatch
  readonly httpPath: string
  readonly httpStatusOk: (status: number) => boolean
  readonly sendProxyLocal: Buffer | null
  readonly jitterRatio: number
  readonly flap: FlapDamping | null
  readonly initialState: InitialState
}

/**
 * The prober's defaults, so it works on its own (tests, `checkOnce`). The settings table
 * (lib/config/settings.ts) uses these as its health rows' defaults: config imports health,
 * never the other way round, so there is no import cycle to trip over at start-up.
 */
export const CHECK_DEFAULTS = {
  intervalMs: 2_000,
  timeoutMs: 1_000,
  rise: 2,
  fall: 3,
  httpPath: '/',
  httpStatus: '2xx',
} as const

/** Each check delay is spread by ±10% so many backends are not checked in lockstep. */
const DEFAULT_JITTER_RATIO = 0.1

const INITIAL_STATES: readonly InitialState[] = ['first-check', 'fully-up', 'up', 'down', 'fully-down']

/** Validates and fills defaults; every error names the option and the value. */
export function resolveCheckOptions(options: CheckOptions): ResolvedCheckOptions {
  const d = CHECK_DEFAULTS
  if (!isCheckType(options.type)) {
    throw new ConfigError('check.type', options.type, `must be one of ${CHECK_TYPES.join(', ')}`)
  }
  const intervalMs = positiveMs('intervalMs', options.intervalMs ?? d.intervalMs)
  const timeoutMs = positiveMs('timeoutMs', options.timeoutMs ?? d.timeoutMs)
  const rise = count('rise', options.rise ?? d.rise)
  const fall = count('fall', options.fall ?? d.fall)
  const fastIntervalMs = positiveMs('fastIntervalMs', options.fastIntervalMs ?? intervalMs)
  const downIntervalMs = positiveMs('downIntervalMs', options.downIntervalMs ?? intervalMs)

  let port: number | null = null
  if (options.port !== undefined) {
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new ConfigError('check.port', options.port, 'must be an integer from 1 to 65535')
    }
    port = options.port
  }

  const jitterRatio = options.jitterRatio ?? DEFAULT_JITTER_RATIO
  if (!Number.isFinite(jitterRatio) || jitterRatio < 0 || jitterRatio > 0.5) {
    throw new ConfigError('check.jitterRatio', jitterRatio, 'must be from 0 to 0.5')
  }

  const initialState = options.initialState ?? 'first-check'
  if (!INITIAL_STATES.includes(initialState)) {
    throw new ConfigError('check.initialState', initialState, `must be one of ${INITIAL_STATES.join(', ')}`)
  }

  let flap: FlapDamping | null = null
  if (options.flap !== undefined) {
    flap = {
      maxTransitions: count('flap.maxTransitions', options.flap.maxTransitions),
      windowMs: positiveMs('flap.windowMs', options.flap.windowMs),
      holdMs: positiveMs('flap.holdMs', options.flap.holdMs),
    }
  }

  const sendProxyLocal = options.sendProxyLocal ?? null
  const send = options.send ?? Buffer.alloc(0)
  const expect = options.expect === undefined ? [] : Buffer.isBuffer(options.expect) ? [options.expect] : [...options.expect]
  const expectMatch = options.expectMatch ?? 'prefix'
  if (expectMatch !== 'prefix' && expectMatch !== 'contains') {
    throw new ConfigError('check.expectMatch', expectMatch, "must be 'prefix' or 'contains'")
  }
  const httpPath = options.httpPath ?? d.httpPath
  const httpStatus = options.httpStatus ?? d.httpStatus
  // The type's own settings are checked by the type (lib/health/checks.ts), for config too.
  const problem = checks[options.type].validate({ send: options.send, expect, httpPath, httpStatus })[0]
  if (problem) throw new ConfigError(`check.${problem.key}`, problem.value, problem.problem)
  const statusOk = parseExpectStatus(httpStatus)
  // Only an http check reads it; another type's unused status text is not an error.
  const httpStatusOk = typeof statusOk === 'string' ? () => false : statusOk

  return {
    type: options.type,
    intervalMs,
    timeoutMs,
    rise,
    fall,
    fastIntervalMs,
    downIntervalMs,
    port,
    send,
    sendBytes: sendProxyLocal ? Buffer.concat([sendProxyLocal, send]) : send,
    expect,
    expectMatch,
    httpPath,
    httpStatusOk,
    sendProxyLocal,
    jitterRatio,
    flap,
    initialState,
  }
}

function positiveMs(key: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(`check.${key}`, value, 'must be a positive number of milliseconds')
  }
  return value
}

function count(key: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new ConfigError(`check.${key}`, value, 'must be a positive integer')
  }
  return value
}
