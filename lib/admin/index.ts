/**
 * The admin endpoint (off unless configured): `GET /status` JSON, `GET /healthz` (200/503 for
 * routers), `GET /metrics` Prometheus
 * text, `POST /backends/{service}/{address}/{drain|maint|enable}`. Optional bearer token read
 * once from a file. Listens on host:port or a unix socket path.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { readFileSync, rmSync } from 'node:fs'
import { timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { formatHostPort, parseHostPort } from '../address/index.js'
import type { AdminConfig } from '../config/index.js'
import { ListenError, errorCode } from '../errors.js'
import type { AdminState } from '../pool/index.js'
import type { Runtime } from '../runtime/index.js'
import { renderMetrics } from './metrics.js'
import { statusOf } from './status.js'
import { healthzOf } from './healthz.js'

export { renderMetrics } from './metrics.js'
export { statusOf, type Status } from './status.js'
export { healthzOf, type Healthz } from './healthz.js'

/** Sessions listed per /sessions request unless `?limit=` says otherwise (the table can be 100k). */
const SESSIONS_LIMIT = 1000

const ACTIONS: Record<string, AdminState> = { drain: 'drain', maint: 'maint', enable: 'enabled' }

export class AdminServer {
  readonly #server: http.Server
  readonly #token: Buffer | undefined
  readonly #runtime: Runtime
  readonly #logger: Logger
  readonly #config: AdminConfig

  constructor(config: AdminConfig, runtime: Runtime, logger: Logger) {
    this.#config = config
    this.#runtime = runtime
    this.#logger = logger.child({ component: 'admin' })
    this.#token = config.tokenFile ? Buffer.from(readFileSync(config.tokenFile, 'utf8').trim()) : undefined
    this.#server = http.createServer((req, res) => this.#handle(req, res))
  }

  /** The bound address: `host:port` or the socket path. */
  address(): string {
    const a = this.#server.address()
    if (typeof a === 'string' || a === null) return this.#config.listen
    return formatHostPort(a.address, a.port)
  }

  async listen(): Promise<void> {
    const target = this.#config.listen
    const options: { path?: string; host?: string; port?: number } = {}
    if (target.includes('/')) {
      rmSync(target, { force: true })
      options.path = target
    } else {
      const hp = parseHostPort(target, '127.0.0.1', true)
      options.host = hp.host
      options.port = hp.port
    }
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', (err) => reject(new ListenError(target, errorCode(err) === 'EADDRINUSE' ? 'address already in use' : errorCode(err), err)))
      this.#server.listen(options, () => resolve())
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }

  #authorized(req: IncomingMessage): boolean {
    if (!this.#token) return true
    const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer /, ''))
    return given.length === this.#token.length && timingSafeEqual(given, this.#token)
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    try {
      if (!this.#authorized(req)) return send(res, 401, { error: 'missing or wrong bearer token' })
      const url = new URL(req.url ?? '/', 'http://admin')
      if (req.method === 'GET' && url.pathname === '/status') return send(res, 200, statusOf(this.#runtime))
      if (req.method === 'GET' && url.pathname === '/healthz') return this.#healthz(res)
      if (req.method === 'GET' && url.pathname === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
        return void res.end(renderMetrics(this.#runtime))
      }
      const sessions = /^\/sessions\/([^/]+)$/.exec(url.pathname)
      if (req.method === 'GET' && sessions) return this.#sessions(res, decodeURIComponent(sessions[1]!), Number(url.searchParams.get('limit') ?? SESSIONS_LIMIT))
      const m = /^\/backends\/([^/]+)\/([^/]+)\/([a-z]+)$/.exec(url.pathname)
      if (m) {
        if (req.method !== 'POST') return send(res, 405, { error: 'use POST' })
        return this.#setState(res, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!), m[3]!)
      }
      send(res, 404, { error: 'not found: try GET /status, GET /healthz, GET /metrics, GET /sessions/{service}, POST /backends/{service}/{address}/{drain|maint|enable}' })
    } catch (err) {
      this.#logger.error({ err }, 'admin request failed')
      send(res, 500, { error: 'internal error' })
    }
  }

  /** For routers and vrrp_scripts: the status code is the answer, the body says why. */
  #healthz(res: ServerResponse): void {
    const health = healthzOf(this.#runtime)
    send(res, health.healthy ? 200 : 503, health)
  }

  /** The UDP session table of a service (client, backend, age, idle, counts), most idle last. */
  #sessions(res: ServerResponse, serviceName: string, limit: number): void {
    const service = this.#runtime.services.get(serviceName)
    if (!service) return send(res, 404, { error: `no service "${serviceName}"` })
    if (!service.udp) return send(res, 404, { error: `service ${serviceName} has no udp listener` })
    const all = service.udp.sessions().sort((a, b) => a.idleMs - b.idleMs)
    const max = Number.isInteger(limit) && limit > 0 ? limit : SESSIONS_LIMIT
    send(res, 200, { service: serviceName, total: all.length, sessions: all.slice(0, max) })
  }

  #setState(res: ServerResponse, serviceName: string, address: string, action: string): void {
    const admin = ACTIONS[action]
    if (!admin) return send(res, 400, { error: `unknown action "${action}": use drain, maint or enable` })
    const service = this.#runtime.services.get(serviceName)
    if (!service) return send(res, 404, { error: `no service "${serviceName}"` })
    const backend = service.pool.byName(address)
    if (!backend) return send(res, 404, { error: `service ${serviceName} has no backend "${address}" (have: ${service.pool.backends.map((b) => b.name).join(', ')})` })
    const from = backend.state
    service.pool.setAdmin(backend.id, admin, `admin API: ${action}`)
    this.#logger.info({ service: serviceName, backend: address, action, from, to: backend.state }, 'admin action')
    send(res, 200, { service: serviceName, backend: address, from, to: backend.state, active: service.pool.active[backend.id] ?? 0 })
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body, null, 2) + '\n')
}
