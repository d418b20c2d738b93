/** The `/status` document: what an operator asks first — what is up, what is not, and why. */
import { formatHostPort } from '../address/index.js'
import type { Runtime } from '../runtime/index.js'

export interface Status {
  readonly pid: number
  readonly uptimeSeconds: number
  readonly services: ReadonlyArray<{
    name: string
    protocols: readonly string[]
    listen: string[]
    balance: string
    usableBackends: number
    usingBackups: boolean
    activeConnections: number
    udpSessions: number | null
    backends: ReadonlyArray<{
      address: string
      state: string
      weight: number
      backup: boolean
      activeConnections: number
      /** 0 = no limit; `queued` connections wait for a slot. */
      maxConns: number
      queued: number
      connectionsTotal: number
      lastChange: string
      lastReason: string
      lastError: string | null
      checks: ReadonlyArray<{ at: string; ok: boolean; durationMs: number; error?: string }>
    }>
  }>
  readonly draining: ReadonlyArray<{ name: string; activeConnections: number }>
}

export function statusOf(runtime: Runtime): Status {
  return {
    pid: process.pid,
    uptimeSeconds: Math.round(process.uptime()),
    services: [...runtime.services.values()].map((h) => ({
      name: h.name,
      protocols: h.config.protocols,
      listen: (h.tcp ?? h.udp)?.addresses().map((a) => formatHostPort(a.host, a.port)) ?? h.config.listen.map((l) => formatHostPort(l.host, l.port)),
      balance: h.config.balance,
      usableBackends: h.pool.usableCount,
      usingBackups: h.pool.usingBackups,
      activeConnections: h.activeConnections,
      udpSessions: h.udp ? h.udp.activeSessions : null,
      backends: h.pool.backends.map((b) => ({
        address: b.name,
        state: b.state,
        weight: b.weight,
        backup: b.backup,
        activeConnections: h.pool.active[b.id] ?? 0,
        maxConns: b.maxConns,
        queued: h.pool.queued(b),
        connectionsTotal: b.connectionsTotal,
        lastChange: new Date(b.lastChangeAt).toISOString(),
        lastReason: b.lastReason,
        lastError: b.lastError ?? null,
        checks: (h.prober?.history(b.id) ?? []).map((c) => ({ at: new Date(c.at).toISOString(), ok: c.ok, durationMs: c.durationMs, ...(c.error ? { error: c.error } : {}) })),
      })),
    })),
    draining: [...runtime.draining].map((h) => ({ name: h.name, activeConnections: h.activeConnections })),
  }
}
