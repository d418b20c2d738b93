/**
 * Prometheus text exposition (format 0.0.4), written here rather than with prom-client: our
 * metrics are reads of counters the pools and services already keep, rendered on scrape, so a
 * registry that mirrors them would add per-connection work and a dependency for ~80 lines.
 * Every metric name lives in this file (DESIGN: "a metric name in admin/").
 */
import { REFUSAL_REASONS } from '../flow/index.js'
import { readdirSync } from 'node:fs'
import { BACKEND_STATES } from '../pool/index.js'
import type { Runtime } from '../runtime/index.js'


function escape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

class Exposition {
  #out: string[] = []
  #declared = new Set<string>()

  metric(name: string, type: 'counter' | 'gauge', help: string, labels: Record<string, string>, value: number): void {
    if (!this.#declared.has(name)) {
      this.#declared.add(name)
      this.#out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    }
    const text = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`).join(',')
    this.#out.push(`${name}${text ? `{${text}}` : ''} ${Number.isFinite(value) ? value : 0}`)
  }

  toString(): string {
    return this.#out.join('\n') + '\n'
  }
}

export function renderMetrics(runtime: Runtime): string {
  const m = new Exposition()
  const handles = [...runtime.services.values()]
  for (const h of handles) {
    const service = h.name
    for (const b of h.pool.backends) {
      const labels = { service, backend: b.name }
      m.metric('l4lb_connections_total', 'counter', 'Connections proxied to a backend.', labels, b.connectionsTotal)
    }
  }
  for (const h of handles) {
    for (const b of h.pool.backends) m.metric('l4lb_queue_length', 'gauge', 'Connections waiting now for a slot of a backend at its maxConns.', { service: h.name, backend: b.name }, h.pool.queued(b))
    for (const b of h.pool.backends) m.metric('l4lb_active_connections', 'gauge', 'Connections open to a backend now.', { service: h.name, backend: b.name }, h.pool.active[b.id] ?? 0)
  }
  for (const h of handles) {
    for (const b of h.pool.backends) {
      m.metric('l4lb_bytes_total', 'counter', 'Bytes proxied, counted when a connection closes (in = from clients, out = from the backend).', { service: h.name, backend: b.name, direction: 'in' }, b.bytesFromClients)
      m.metric('l4lb_bytes_total', 'counter', 'Bytes proxied, counted when a connection closes (in = from clients, out = from the backend).', { service: h.name, backend: b.name, direction: 'out' }, b.bytesFromBackend)
    }
  }
  for (const h of handles) {
    for (const b of h.pool.backends) m.metric('l4lb_backend_up', 'gauge', '1 when the backend takes new connections (healthy and enabled).', { service: h.name, backend: b.name }, b.usable ? 1 : 0)
  }
  for (const h of handles) {
    for (const b of h.pool.backends) {
      for (const state of BACKEND_STATES) m.metric('l4lb_backend_state', 'gauge', 'The backend state: up, down, drain or maint.', { service: h.name, backend: b.name, state }, b.state === state ? 1 : 0)
    }
  }
  for (const h of handles) {
    if (!h.prober) continue
    for (const b of h.pool.backends) {
      const history = h.prober.history(b.id)
      const last = history[history.length - 1]
      if (last) m.metric('l4lb_check_duration_seconds', 'gauge', 'Duration of the last health check.', { service: h.name, backend: b.name }, last.durationMs / 1000)
    }
  }
  for (const h of handles) {
    for (const b of h.pool.backends) {
      for (const [reason, n] of b.connectErrors) m.metric('l4lb_connect_errors_total', 'counter', 'Failed connects to a backend on the data path, by reason.', { service: h.name, backend: b.name, reason }, n)
    }
  }
  for (const h of handles) {
    const s = h.tcp?.stats
    if (!s) continue
    m.metric('l4lb_accepted_total', 'counter', 'Client connections accepted.', { service: h.name }, s.accepted)
    m.metric('l4lb_rejected_total', 'counter', 'Client connections closed without a backend, by reason.', { service: h.name, reason: 'max-conns' }, s.rejectedMaxConns)
    m.metric('l4lb_rejected_total', 'counter', 'Client connections closed without a backend, by reason.', { service: h.name, reason: 'no-backend' }, s.noBackend)
    m.metric('l4lb_rejected_total', 'counter', 'Client connections closed without a backend, by reason.', { service: h.name, reason: 'backend-full' }, s.backendFull)
    m.metric('l4lb_rejected_total', 'counter', 'Client connections closed without a backend, by reason.', { service: h.name, reason: 'queue-timeout' }, s.queueTimeouts)
    m.metric('l4lb_queued_total', 'counter', 'Connections that waited for a backend at its maxConns.', { service: h.name }, s.queued)
    m.metric('l4lb_early_resets_total', 'counter', 'Connections reset by the client before they were accepted.', { service: h.name }, s.earlyResets)
    m.metric('l4lb_retries_total', 'counter', 'Connects retried on another backend.', { service: h.name }, s.retries)
  }
  for (const h of handles) {
    const u = h.udp
    if (!u) continue
    m.metric('l4lb_udp_sessions', 'gauge', 'UDP sessions open now.', { service: h.name }, u.activeSessions)
    m.metric('l4lb_udp_sessions_total', 'counter', 'UDP sessions created.', { service: h.name }, u.stats.sessionsCreated)
    m.metric('l4lb_udp_dropped_total', 'counter', 'UDP datagrams of new flows dropped, by reason.', { service: h.name, reason: 'max-sessions' }, u.stats.droppedMaxSessions)
    m.metric('l4lb_udp_dropped_total', 'counter', 'UDP datagrams of new flows dropped, by reason.', { service: h.name, reason: 'no-backend' }, u.stats.noBackend)
    m.metric('l4lb_udp_datagrams_total', 'counter', 'UDP datagrams proxied (in = from clients, out = from backends).', { service: h.name, direction: 'in' }, u.stats.datagramsIn)
    m.metric('l4lb_udp_datagrams_total', 'counter', 'UDP datagrams proxied (in = from clients, out = from backends).', { service: h.name, direction: 'out' }, u.stats.datagramsOut)
    m.metric('l4lb_udp_icmp_errors_total', 'counter', 'ICMP unreachable errors on upstream UDP sockets.', { service: h.name }, u.stats.icmpErrors)
  }
  for (const h of handles) {
    // Zeros from the start: a refusal reason that never happened is still a series to alert on.
    for (const [proto, flows] of [['tcp', h.tcp], ['udp', h.udp]] as const) {
      if (!flows) continue
      for (const reason of REFUSAL_REASONS) {
        m.metric('l4lb_refused_total', 'counter', 'New connections (udp: sessions) refused at admission, by reason.', { service: h.name, proto, reason }, flows.admission.refused[reason])
      }
    }
  }
  m.metric('l4lb_draining_services', 'gauge', 'Services removed by a reload whose connections are still finishing.', {}, runtime.draining.size)
  m.metric('l4lb_draining_connections', 'gauge', 'Connections of removed services still open.', {}, [...runtime.draining].reduce((n, s) => n + s.activeConnections, 0))

  const mem = process.memoryUsage()
  const cpu = process.cpuUsage()
  m.metric('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', {}, mem.rss)
  m.metric('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use in bytes.', {}, mem.heapUsed)
  m.metric('process_cpu_seconds_total', 'counter', 'User and system CPU time spent in seconds.', {}, (cpu.user + cpu.system) / 1e6)
  m.metric('process_start_time_seconds', 'gauge', 'Start time of the process since the epoch in seconds.', {}, Math.round(Date.now() / 1000 - process.uptime()))
  m.metric('process_open_fds', 'gauge', 'Open file descriptors.', {}, openFds())
  return m.toString()
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length
  } catch {
    return 0
  }
}
