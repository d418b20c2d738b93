/**
 * Glue between a service's pool and its prober: targets from backends, events into the pool,
 * data-path connect failures into the prober, maint pauses probing. The prober never touches
 * the data path; the data path never waits for the prober.
 */
import { Prober, startCheck, type CheckOptions, type CheckRunner, type CheckTarget, type HealthEvent } from '../health/index.js'
import type { HealthConfig } from '../config/index.js'
import type { Logger } from 'pino'
import type { Pool, StateChange } from '../pool/index.js'
import { encodeV2 } from '../proxy-protocol/index.js'

/** PROXY v2 LOCAL over UNSPEC, no addresses: the spec's header for a balancer's own checks. */
const PROXY_V2_LOCAL = encodeV2({ command: 'local', transport: 'stream' })

export function checkOptions(health: HealthConfig): CheckOptions {
  return {
    type: health.type,
    intervalMs: health.intervalMs,
    timeoutMs: health.timeoutMs,
    rise: health.rise,
    fall: health.fall,
    fastIntervalMs: health.fastIntervalMs,
    downIntervalMs: health.downIntervalMs,
    send: health.send,
    expect: health.expect,
    httpPath: health.httpPath,
    httpExpectStatus: health.httpStatus,
    sendProxyLocal: health.sendProxy ? PROXY_V2_LOCAL : undefined,
    flap: health.flapDamping,
    initialState: 'first-check',
  }
}

export function checkTargets(pool: Pool, health: HealthConfig): CheckTarget[] {
  return pool.backends.map((b) => ({
    id: b.id,
    name: b.name,
    host: b.address,
    port: b.checkPort ?? health.port ?? b.port,
  }))
}

/**
 * Starts probing the pool's backends. Resolves once every backend has had its first check (or
 * after one check timeout plus the first check's jitter), so listeners open with a known state.
 */
export async function attachProber(pool: Pool, health: HealthConfig, logger: Logger): Promise<Prober> {
  const pending = new Set(pool.backends.map((b) => b.id))
  let firstRoundDone: () => void = () => {}
  const firstRound = new Promise<void>((resolve) => (firstRoundDone = resolve))
  const prober = new Prober(checkOptions(health), checkTargets(pool, health), (event: HealthEvent) => {
    pool.setHealth(event.backendId, event.up, event.reason, event.lastError)
    // A backend that fails its very first check never changes state in the pool (it was not
    // usable yet), so say here why it is not taking traffic.
    if (event.from === 'starting' && !event.up) {
      const backend = pool.backends[event.backendId]
      if (backend) {
        backend.lastReason = event.reason
        backend.lastError = event.lastError
        backend.lastChangeAt = Date.now()
      }
      logger.warn({ service: pool.name, backend: backend?.name, from: 'starting', to: 'down', reason: event.reason, lastError: event.lastError }, 'backend state changed')
    }
    if (event.from === 'starting' && pending.delete(event.backendId) && pending.size === 0) firstRoundDone()
  }, { runCheck: timedChecks(pool) })
  pool.onPassiveFailure((backend, error) => prober.observePassive(backend.id, false, error))
  pool.onStateChange((change: StateChange) => {
    if (change.to === 'maint') prober.pause(change.backend.id)
    else if (change.from === 'maint') prober.resume(change.backend.id)
  })
  prober.start()
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, health.timeoutMs + health.intervalMs * 0.1 + 250)
  })
  await Promise.race([firstRound, limit])
  clearTimeout(timer)
  return prober
}

/** The real checks, each one's duration handed to the pool (the check-duration histogram). */
function timedChecks(pool: Pool): CheckRunner {
  return (target, options, clock) => {
    const running = startCheck(target, options, clock)
    // A check cut short by stop or maintenance says nothing about the backend.
    void running.done.then((result) => {
      if (result.error !== 'cancelled') pool.observeCheck(target.id, result.durationMs)
    })
    return running
  }
}
