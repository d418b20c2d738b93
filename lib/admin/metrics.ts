/**
 * Prometheus text exposition (format 0.0.4), written here rather than with prom-client: our
 * metrics are reads of counters the pools and services already keep, rendered on scrape, so a
 * registry that mirrors them would add per-connection work and a dependency for ~80 lines.
 * Every metric name lives in this file (DESIGN: "a metric name in admin/").
 */
import { REFUSAL_REASONS } from '../flow/index.js'
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { BACKEND_STATES, CHECK_DURATION_BOUNDS_MS } from '../pool/index.js'
import type { Runtime, ServiceHandle } from '../runtime/index.js'

const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version

/**
 * Connect failures exported as 0 from the start, so `rate()` and alerts see a series before
 * the first failure (Prometheus best practice: no missing series for known label values).
 * Other codes appear when they first happen.
 */
const CONNECT_ERROR_REASONS = ['ECONNREFUSED', 'timeout', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'] as const

/** The bucket bounds as `le` labels, in seconds, computed once. */
const CHECK_DURATION_LE = [...CHECK_DURATION_BOUNDS_MS.map((ms) => String(ms / 1000)), '+Inf']

function escape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

/**
 * Samples are grouped by family as they are added, so callers may loop service by service:
 * the text format wants every line of a family in one block, after its HELP and TYPE.
 */
class Exposition {
  readonly #families = new Map<string, string[]>()

  metric(name: string, type: 'counter' | 'gauge', help: string, labels: Record<string, string>, value: number): void {
    this.#family(name, type, help).push(sample(name, labels, value))
  }

  /** `counts` per bucket (not cumulative), the last one for +Inf. */
  histogram(name: string, help: string, labels: Record<string, string>, le: readonly string[], counts: ArrayLike<number>, sum: number): void {
    const lines = this.#family(name, 'histogram', help)
    let cumulative = 0
    for (let i = 0; i < le.length; i++) {
      cumulative += counts[i] ?? 0
      lines.push(sample(`${name}_bucket`, { ...labels, le: le[i]! }, cumulative))
    }
    lines.push(sample(`${name}_sum`, labels, sum), sample(`${name}_count`, labels, cumulative))
  }

  #family(name: string, type: string, help: string): string[] {
    let lines = this.#families.get(name)
    if (lines === undefined) this.#families.set(name, (lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`]))
    return lines
  }

  toString(): string {
    let out = ''
    for (const lines of this.#families.values()) out += lines.join('\n') + '\n'
    return out
  }
}

function sample(name: string, labels: Record<string, string>, value: number): string {
  const text = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`).join(',')
  return `${name}${text ? `{${text}}` : ''} ${Number.isFinite(value) ? value : 0}`
}

/**
 * Bytes of each backend of a service: counted at close, plus what its open connections have
 * moved so far (the data plane sums those by backend), so long connections show traffic while
 * they last.
 */
export function liveBytes(h: ServiceHandle): Map<string, [number, number]> {
  const open = h.tcp?.openBytes()
  const out = new Map<string, [number, number]>()
  for (const b of h.pool.backends) {
    const moving = open?.get(b.name)
    out.set(b.name, [b.bytesFromClients + (moving?.[0] ?? 0), b.bytesFromBackend + (moving?.[1] ?? 0)])
  }
  return out
}

export function renderMetrics(runtime: Runtime): string {
  const m = new Exposition()
  const handles = [...runtime.services.values()]
  m.metric('l4lb_build_info', 'gauge', 'Always 1: the l4lb version and the Node.js version it runs on.', { version: VERSION, node: process.version }, 1)
  for (const h of handles) {
    const service = h.name
    for (const b of h.pool.backends) {
      const labels = { service, backend: b.name }
      m.metric('l4lb_connections_total', 'counter', 'Connections proxied to a backend.', labels, h.connectionsTotal(b))
    }
  }
  for (const h of handles) {
    for (const b of h.pool.backends) m.metric('l4lb_queue_length', 'gauge', 'Connections waiting now for a slot of a backend at its maxConns.', { service: h.name, backend: b.name }, h.pool.queued(b))
    for (const b of h.pool.backends) m.metric('l4lb_active_connections', 'gauge', 'Connections open to a backend now.', { service: h.name, backend: b.name }, h.pool.active[b.id] ?? 0)
  }
  const bytesHelp = 'Bytes proxied, including those of connections still open (in = from clients, out = from the backend).'
  for (const h of handles) {
    const bytes = liveBytes(h)
    for (const b of h.pool.backends) {
      const [fromClients, fromBackend] = bytes.get(b.name) ?? [0, 0]
      m.metric('l4lb_bytes_total', 'counter', bytesHelp, { service: h.name, backend: b.name, direction: 'in' }, fromClients)
      m.metric('l4lb_bytes_total', 'counter', bytesHelp, { service: h.name, backend: b.name, direction: 'out' }, fromBackend)
    }
  }
  for (const h of handles) {
    for (const b of h.pool.backends) m.metric('l4lb_backend_weight', 'gauge', 'The weight picks use now (the config\'s, or one set through the admin API).', { service: h.name, backend: b.name }, b.weight)
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
      m.histogram('l4lb_check_duration_seconds', 'Duration of health checks, passed or failed.', { service: h.name, backend: b.name }, CHECK_DURATION_LE, b.checkDurationCounts, b.checkDurationSumMs / 1000)
    }
  }
  for (const h of handles) {
    for (const b of h.pool.backends) {
      for (const reason of CONNECT_ERROR_REASONS) m.metric('l4lb_connect_errors_total', 'counter', 'Failed connects to a backend on the data path, by reason.', { service: h.name, backend: b.name, reason }, b.connectErrors.get(reason) ?? 0)
      for (const [reason, n] of b.connectErrors) {
        if (!(CONNECT_ERROR_REASONS as readonly string[]).includes(reason)) m.metric('l4lb_connect_errors_total', 'counter', 'Failed connects to a backend on the data path, by reason.', { service: h.name, backend: b.name, reason }, n)
      }
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
    // Not `l4lb_udp_sessions`: under OpenMetrics that would be the family of the counter below.
    m.metric('l4lb_udp_active_sessions', 'gauge', 'UDP sessions open now.', { service: h.name }, u.activeSessions)
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
