/**
 * The native data plane's TypeScript side (DESIGN "Two data planes, one control plane"): which
 * plane a service gets and why (here), the addon (addon.ts), the process's engine (engine.ts)
 * and a service on it (service.ts), which publishes the pool's pick data to the engine on every
 * pool change and turns close records into the node plane's pino line and pool calls. No policy
 * lives here or in C: the pool and its picker decide, the engine indexes what they published.
 */
import type { Logger } from 'pino'
import { isBalanceName } from '../balance/index.js'
import type { Config, ServiceConfig } from '../config/index.js'
import type { Pool } from '../pool/index.js'
import { loadAddon, type DataPlane, type PlaneChoice } from './addon.js'
import { runningEngine } from './engine.js'

export { DATA_PLANES, loadAddon, nativeAddon, type DataPlane, type NativeAdmission, type PlaneChoice } from './addon.js'
export { nativeEngine, NativeEngine } from './engine.js'
export { nativeAdmission, nativePick, NativeTcpService } from './service.js'

// ---- choosing a plane ----------------------------------------------------------------------

/** What a service uses that the native plane lacks, or undefined. */
export function nativeLacks(service: ServiceConfig): string | undefined {
  if (!service.protocols.includes('tcp')) return 'UDP stays on the node plane'
  if (service.protocols.includes('udp')) return 'tcp,udp services stay on the node plane'
  if (!isBalanceName(service.balance)) return `balance ${service.balance} is a registered algorithm (only built-in ones export pick data)`
  if (service.acceptProxy.length > 0) return 'accept-proxy (PROXY parsing stays in TypeScript)'
  for (const l of service.listen) if (l.family === 0) return `listen address ${l.host} is a hostname`
  return undefined
}

/**
 * `pool` is the service's pool when it already runs (a reload): a pool made without the engine's
 * shared counters cannot move to the native plane until a restart.
 */
export function choosePlane(service: ServiceConfig, requested: DataPlane, pool?: Pool): PlaneChoice {
  if (requested === 'node') return { plane: 'node', why: 'data-plane node' }
  const lacks = nativeLacks(service)
  if (lacks !== undefined) return { plane: 'node', why: lacks }
  if (pool !== undefined && runningEngine()?.storageOf(pool.active) === undefined) return { plane: 'node', why: 'started on the node plane (restart to move it)' }
  const result = loadAddon()
  if (!('addon' in result)) return { plane: 'node', why: result.reason }
  return { plane: 'native', why: requested === 'native' ? 'data-plane native' : 'auto: native addon built' }
}

let fallbackNoted = false

/**
 * Says once per process that the native plane is not available and why, when a service that
 * could have used it runs on the node plane for that reason alone.
 */
export function noteFallback(logger: Logger, service: ServiceConfig, choice: PlaneChoice): void {
  if (fallbackNoted || choice.plane !== 'node' || nativeLacks(service) !== undefined || choice.why === 'data-plane node') return
  const result = loadAddon()
  if ('addon' in result) return
  fallbackNoted = true
  logger.info({ reason: result.reason }, 'native data plane unavailable: TCP services run on the node plane')
}

/** `--data-plane native` that cannot be honoured: the one line to exit 2 with. */
export function planeProblem(config: Config): string | undefined {
  if (config.dataPlane !== 'native') return undefined
  const result = loadAddon()
  if (!('addon' in result)) return `--data-plane native: ${result.reason}`
  for (const service of config.services) {
    const lacks = nativeLacks(service)
    if (lacks !== undefined) return `--data-plane native: service ${service.name}: ${lacks}`
  }
  return undefined
}
