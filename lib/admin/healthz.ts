/**
 * `GET /healthz`: the one bit a router needs (keepalived's vrrp_script, a BIRD/ExaBGP health
 * gate, a cloud load balancer's target check). 200 while every service has a usable backend;
 * 503 naming the services that have none, or while the process is stopping, so the floating IP
 * or the BGP route moves away before clients meet a closed listener.
 */
import type { Runtime } from '../runtime/index.js'

export interface Healthz {
  readonly healthy: boolean
  /** Services with no usable backend (primaries or backups), by name. */
  readonly failing: readonly string[]
  readonly stopping: boolean
  readonly services: number
}

export function healthzOf(runtime: Runtime): Healthz {
  const failing = [...runtime.services.values()].filter((s) => s.pool.usableCount === 0).map((s) => s.name)
  const stopping = runtime.stopping
  return { healthy: failing.length === 0 && !stopping && runtime.services.size > 0, failing, stopping, services: runtime.services.size }
}
