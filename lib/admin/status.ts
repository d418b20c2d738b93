/** The `/status` document: what an operator asks first — what is up, what is not, and why. */
import { formatHostPort } from '../address/index.js'
import type { Runtime } from '../runtime/index.js'
import { liveBytes } from './metrics.js'

export interface Status {
  readonly pid: number
  readonly uptimeSeconds: number
  readonly services: ReadonlyArray<{
    name: string
    protocols: readonly string[]
    listen: string[]
    balance: string
    plane: 'native' | 'node'
    planeWhy: string
    usableBackends: number
    usingBackups: boolean
    activeConnections: number
    udpSessions: number | null
    backends: ReadonlyArray<{
      address: string
      state: string
      weight: number
      /** The config's weight; differs from `weight` after POST /backends/…/weight. */
      configWeight: number
      backup: boolean
      activeConnections: number
      /** 0 = no limit; `queued` connections wait for a slot. */
      maxConns: number
      queued: number
      connectionsTotal: number
      /** Bytes from clients / from the backend, including connections still open. */
      bytesIn: number
      bytesOut: number
      lastChange: string
      lastReason: string
      lastError: string | null
      checks: ReadonlyArray<{ at: string; ok: boolean; durationMs: number; error?: string; passive?: true }>
    }>
  }>
  readonly draining: ReadonlyArray<{ name: string; activeConnections: number }>
}

export function statusOf(runtime: Runtime): Status {
  return {
    pid: process.pid,
    uptimeSeconds: Math.round(process.uptime()),
    services: [...runtime.services.values()].map((h) => {
      const bytes = liveBytes(h)
      return {
        name: h.name,
        protocols: h.config.protocols,
        listen: (h.tcp ?? h.udp)?.addresses().map((a) => formatHostPort(a.host, a.port)) ?? h.config.listen.map((l) => formatHostPort(l.host, l.port)),
        balance: h.config.balance,
        plane: h.plane.plane,
        planeWhy: h.plane.why,
        usableBackends: h.pool.usableCount,
        usingBackups: h.pool.usingBackups,
        activeConnections: h.activeConnections,
        udpSessions: h.udp ? h.udp.activeSessions : null,
        backends: h.pool.backends.map((b) => ({
          address: b.name,
          state: b.state,
          weight: b.weight,
          configWeight: b.configWeight,
          backup: b.backup,
          activeConnections: h.pool.active[b.id] ?? 0,
          maxConns: b.maxConns,
          queued: h.pool.queued(b),
          connectionsTotal: h.connectionsTotal(b),
          bytesIn: bytes.get(b.name)?.[0] ?? 0,
          bytesOut: bytes.get(b.name)?.[1] ?? 0,
          lastChange: new Date(b.lastChangeAt).toISOString(),
          lastReason: b.lastReason,
          lastError: b.lastError ?? null,
          checks: (h.prober?.history(b.id) ?? []).map((c) => ({ at: new Date(c.at).toISOString(), ok: c.ok, durationMs: c.durationMs, ...(c.error ? { error: c.error } : {}), ...(c.passive ? { passive: true as const } : {}) })),
        })),
      }
    }),
    draining: [...runtime.draining].map((h) => ({ name: h.name, activeConnections: h.activeConnections })),
  }
}
