/**
 * Logs a recurring condition (EMFILE, accept errors) at most once per interval, with how many
 * times it happened since the last line, so a storm cannot flood the log or slow the process.
 */
import type { Logger } from 'pino'

export class RateLimitedLog {
  #lastAt = 0
  #suppressed = 0
  constructor(private readonly logger: Logger, private readonly intervalMs = 1000) {}

  warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now()
    if (now - this.#lastAt < this.intervalMs) {
      this.#suppressed++
      return
    }
    this.logger.warn({ ...fields, suppressed: this.#suppressed }, msg)
    this.#lastAt = now
    this.#suppressed = 0
  }
}
