/**
 * The per-flow log lines of one data path: the close line every connection or session gets
 * (`--log-connections all|errors|none`), and the refusal and error lines, which go through one
 * rate limiter per reason so a storm of them cannot flood the log (issue 12 item 3).
 */
import type { Logger } from 'pino'
import { RateLimitedLog } from '../log/rate-limit.js'

export type LogConnections = 'all' | 'errors' | 'none'

/** Close reasons of a flow that ended the way flows end; any other is a failure. */
const ORDINARY = new Set(['client-closed', 'backend-closed', 'idle-timeout', 'responses', 'shutdown'])

export function isOrdinaryClose(reason: string): boolean {
  return ORDINARY.has(reason)
}

export class FlowLog {
  readonly logger: Logger
  readonly #limited: RateLimitedLog
  readonly #info: boolean
  #mode: LogConnections

  constructor(logger: Logger, mode: LogConnections) {
    this.logger = logger
    this.#limited = new RateLimitedLog(logger)
    this.#info = logger.isLevelEnabled('info')
    this.#mode = mode
  }

  set mode(mode: LogConnections) {
    this.#mode = mode
  }

  /**
   * Whether a close line with this reason is to be written at all: ask first, so the line's
   * object is built only when it will be (pino: disabled levels cost nothing).
   */
  wantsClose(reason: string): boolean {
    if (!this.#info || this.#mode === 'none') return false
    return this.#mode === 'all' || !ORDINARY.has(reason)
  }

  /**
   * Writes a close line (after wantsClose said yes). Ordinary closes are one line each — the
   * operator chose them; failures are limited to one line per reason per second.
   */
  close(reason: string, fields: Record<string, unknown>, msg: string): void {
    if (ORDINARY.has(reason)) this.logger.info(fields, msg)
    // A PROXY header failure is limited per label (13 kinds), so each kind still shows up.
    else this.#limited.write('info', `${msg}|${reason}|${String(fields.proxyError ?? '')}`, fields, msg)
  }

  /** A refused connection or dropped flow: one line per reason per second with a suppressed count. */
  refused(reason: string, fields: Record<string, unknown>, msg = 'connection refused'): void {
    if (this.#mode === 'none') return
    this.#limited.write('info', `refused|${reason}`, { ...fields, reason }, msg)
  }

  /** A condition of our own (EMFILE, a failed socket call): one line per message per second. */
  warn(fields: Record<string, unknown>, msg: string): void {
    this.#limited.warn(fields, msg)
  }
}
