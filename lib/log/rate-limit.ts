/**
 * Logs a recurring condition at most once per interval per key, with how many lines of that key
 * were dropped since the last one (`suppressed`), so a storm — EMFILE, 2,000 bad PROXY headers,
 * a flood of refused connections — can neither flood the log nor slow the process (issue 12
 * item 3: "one rate-limited line per reason per second with a suppressed count").
 *
 * Keys are expected from a small fixed set (refusal reasons, PROXY error labels, messages);
 * past MAX_KEYS distinct keys the rest share one window rather than grow the table.
 * The suppressed count of a window is reported on the next line of the same key.
 */
import type { Logger } from 'pino'

export type RateLimitedLevel = 'debug' | 'info' | 'warn' | 'error'

/** Distinct keys tracked; a bound, not a tuning knob. */
export const MAX_KEYS = 256
const OVERFLOW_KEY = '\u0000overflow'

interface Window {
  /** When the last line of this key was written; -Infinity = never. */
  lastAt: number
  suppressed: number
}

export class RateLimitedLog {
  readonly #logger: Logger
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #windows = new Map<string, Window>()
  /** Lines dropped over the whole life of this log (for tests and metrics). */
  suppressedTotal = 0

  /** `now` is monotonic milliseconds, injectable for tests. */
  constructor(logger: Logger, intervalMs = 1000, now: () => number = monotonicNow) {
    this.#logger = logger
    this.#intervalMs = intervalMs
    this.#now = now
  }

  /** A warning limited per message text (EMFILE on accept, backend connect errors). */
  warn(fields: Record<string, unknown>, msg: string): boolean {
    return this.write('warn', msg, fields, msg)
  }

  /**
   * Writes `msg` with `fields` and `suppressed` (lines of `key` dropped since the last one), or
   * drops it when a line of `key` went out less than the interval ago. Returns whether it was
   * written. `fields` is only copied when the line is written.
   */
  write(level: RateLimitedLevel, key: string, fields: Record<string, unknown>, msg: string): boolean {
    const window = this.#window(key)
    const now = this.#now()
    if (now - window.lastAt < this.#intervalMs) {
      window.suppressed++
      this.suppressedTotal++
      return false
    }
    this.#logger[level]({ ...fields, suppressed: window.suppressed }, msg)
    window.lastAt = now
    window.suppressed = 0
    return true
  }

  /** Lines of `key` dropped since its last line (0 for a key never seen). */
  pending(key: string): number {
    return this.#windows.get(key)?.suppressed ?? 0
  }

  #window(key: string): Window {
    let window = this.#windows.get(key)
    if (window !== undefined) return window
    if (this.#windows.size >= MAX_KEYS) key = OVERFLOW_KEY
    window = this.#windows.get(key)
    if (window === undefined) this.#windows.set(key, (window = { lastAt: -Infinity, suppressed: 0 }))
    return window
  }
}

function monotonicNow(): number {
  return performance.now()
}
