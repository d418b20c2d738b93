/** `l4lb status` (and `status --healthy`) and `l4lb drain|maint|enable`: small clients of the admin endpoint. */
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { parseHostPort } from '../address/index.js'
import type { Healthz, Status } from '../admin/index.js'
import { ExitError, EXIT_RUNTIME } from './index.js'

export interface Target {
  admin: string
  adminTokenFile?: string
}

export function request(target: Target, method: string, path: string): Promise<{ status: number; body: string }> {
  const headers: Record<string, string> = {}
  if (target.adminTokenFile) headers.authorization = `Bearer ${readFileSync(target.adminTokenFile, 'utf8').trim()}`
  const where = target.admin.includes('/') ? { socketPath: target.admin } : (() => {
    const hp = parseHostPort(target.admin, '127.0.0.1')
    return { host: hp.host, port: hp.port }
  })()
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, method, path, headers, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', (err: NodeJS.ErrnoException) => reject(new ExitError(EXIT_RUNTIME, `cannot reach the admin endpoint at ${target.admin}: ${err.code ?? err.message}`)))
    req.end()
  })
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n'
}

export async function statusCommand(opts: Target & { json?: boolean; healthy?: boolean }): Promise<void> {
  if (opts.healthy) return healthyCommand(opts)
  const { status, body } = await request(opts, 'GET', '/status')
  if (status !== 200) throw new ExitError(EXIT_RUNTIME, `admin endpoint answered ${status}: ${body.trim()}`)
  if (opts.json) return void process.stdout.write(body)
  const doc = JSON.parse(body) as Status
  let out = ''
  for (const s of doc.services) {
    out += `service ${s.name} (${s.protocols.join(',')}) on ${s.listen.join(', ')}  balance=${s.balance}  usable=${s.usableBackends}/${s.backends.length}${s.usingBackups ? ' (backups)' : ''}  active=${s.activeConnections}\n`
    const rows = [['BACKEND', 'STATE', 'WEIGHT', 'ACTIVE', 'TOTAL', 'SINCE', 'WHY']]
    for (const b of s.backends) {
      rows.push([b.address + (b.backup ? ' (backup)' : ''), b.state, String(b.weight), String(b.activeConnections), String(b.connectionsTotal), b.lastChange.slice(11, 19), b.lastReason + (b.lastError && b.state === 'down' ? ` [${b.lastError}]` : '')])
    }
    out += table(rows) + '\n'
  }
  for (const d of doc.draining) out += `draining (removed by reload): ${d.name} with ${d.activeConnections} connections\n`
  process.stdout.write(out)
}

export async function adminCommand(action: string, service: string, backend: string, opts: Target): Promise<void> {
  const { status, body } = await request(opts, 'POST', `/backends/${encodeURIComponent(service)}/${encodeURIComponent(backend)}/${action}`)
  if (status !== 200) throw new ExitError(EXIT_RUNTIME, (JSON.parse(body) as { error?: string }).error ?? `admin endpoint answered ${status}`)
  const r = JSON.parse(body) as { from: string; to: string; active: number }
  process.stdout.write(`${service} ${backend}: ${r.from} → ${r.to} (${r.active} active connections)\n`)
}

/**
 * `l4lb status --healthy`: exit 0 when /healthz says 200, 1 otherwise (including when the admin
 * endpoint cannot be reached: a dead l4lb is not healthy). Made for keepalived's vrrp_script and
 * BGP health gates, which read only the exit code; the one line is for the person at a terminal.
 */
async function healthyCommand(opts: Target & { json?: boolean }): Promise<void> {
  const { status, body } = await request(opts, 'GET', '/healthz')
  if (opts.json) process.stdout.write(body)
  let doc: Partial<Healthz> = {}
  try {
    doc = JSON.parse(body) as Healthz
  } catch {
    throw new ExitError(EXIT_RUNTIME, `admin endpoint answered ${status} without a /healthz document (an l4lb older than /healthz?)`)
  }
  if (status === 200 && doc.healthy === true) {
    if (!opts.json) process.stdout.write(`healthy: ${doc.services ?? '?'} service(s), each with a usable backend\n`)
    return
  }
  const why = doc.stopping ? 'stopping' : doc.failing && doc.failing.length > 0 ? `no usable backend in ${doc.failing.join(', ')}` : `admin endpoint answered ${status}`
  throw new ExitError(EXIT_RUNTIME, `unhealthy: ${why}`)
}
