/**
 * Health checks written by an embedding program (`registry.addCheck`, lib/api): a function that
 * resolves when the backend is healthy and rejects (or throws) with the reason when it is not.
 * The prober treats it like its own checks — same rise/fall, intervals, timeout, history — through
 * the CheckRunner door it already has for test fakes.
 */
import type { HealthConfig } from '../config/types.js'
import type { CheckResult, CheckRunner } from './checks.js'

/** What a custom check is told about the backend it probes. */
export interface HealthCheckTarget {
  /** The backend's configured `host:port` (its identity in logs and /status). */
  readonly name: string
  /** The address to dial, resolved at load (no DNS per check). */
  readonly host: string
  /** The backend's port, or the service's check port when one is set. */
  readonly port: number
}

export interface HealthCheckContext {
  /** The service's check timeout; `signal` aborts when it passes (or the prober stops). */
  readonly timeoutMs: number
  readonly signal: AbortSignal
}

export interface HealthCheck {
  /**
   * Optional: judges a service's `health` settings when the config is loaded (start and every
   * reload), so a mistake is a config error naming the key and not a failing check later.
   * Return the problem as a short phrase, or undefined when the settings are fine.
   */
  validate?(health: HealthConfig): string | undefined
  /**
   * One probe. Resolve: passed. Reject or throw: failed, with the error's message as the reason
   * shown in /status and the log (keep it short, e.g. "PONG expected, got -LOADING").
   */
  run(target: HealthCheckTarget, context: HealthCheckContext): Promise<void>
}

/** Adapts a HealthCheck to the prober's CheckRunner: bounded by the timeout, never rejects. */
export function customCheckRunner(check: HealthCheck): CheckRunner {
  return (target, options, clock) => {
    const at = clock.now()
    const controller = new AbortController()
    let settled = false
    let settle!: (r: CheckResult) => void
    const done = new Promise<CheckResult>((resolve) => (settle = resolve))
    const finish = (ok: boolean, error?: string): void => {
      if (settled) return
      settled = true
      clock.clearTimeout(timer)
      if (!ok) controller.abort()
      settle(ok ? { at, durationMs: clock.now() - at, ok } : { at, durationMs: clock.now() - at, ok, error: error ?? 'failed' })
    }
    const timer = clock.setTimeout(() => finish(false, 'timeout'), options.timeoutMs)
    let running: Promise<void>
    try {
      running = check.run({ name: target.name, host: target.host, port: options.port ?? target.port }, { timeoutMs: options.timeoutMs, signal: controller.signal })
    } catch (err) {
      running = Promise.reject(err)
    }
    Promise.resolve(running).then(
      () => finish(true),
      (err: unknown) => finish(false, err instanceof Error ? err.message : String(err)),
    )
    return { done, cancel: () => finish(false, 'cancelled') }
  }
}
