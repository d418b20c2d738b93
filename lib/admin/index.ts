/**
 * The admin endpoint (off unless configured): the status page (`GET /`, live over `GET /events`),
 * `GET /status` JSON, `GET /healthz` (200/503 for routers), `GET /metrics` Prometheus text,
 * `GET /sessions/{service}`, `POST /backends/{service}/{address}/{drain|maint|enable|weight}`. Optional bearer token read
 * once from a file. Listens on host:port or a unix socket path.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { readFileSync, rmSync } from 'node:fs'
import { timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { formatHostPort, parseHostPort } from '../address/index.js'
import { MAX_WEIGHT } from '../balance/index.js'
import type { AdminConfig } from '../config/index.js'
import { ListenError, errorCode } from '../errors.js'
import type { AdminState, Pool } from '../pool/index.js'
import type { Runtime } from '../runtime/index.js'
import { EventStreams, Rates, sseEvent } from './events.js'
import { renderMetrics } from './metrics.js'
import { PAGE_CSP, PAGE_HTML, PAGE_SCRIPT, PAGE_STYLE } from './page/index.js'
import { statusOf } from './status.js'
import { healthzOf } from './healthz.js'

export { renderMetrics } from './metrics.js'
export { statusOf, type Status } from './status.js'
export { healthzOf, type Healthz } from './healthz.js'

/** Sessions listed per /sessions request unless `?limit=` says otherwise (the table can be 100k). */
const SESSIONS_LIMIT = 1000
/** The page's feed and its sparklines' samples: once a second. */
const TICK_MS = 1000
/** A POST body is a small JSON object at most. */
const MAX_BODY_BYTES = 1024
const BODY_TIMEOUT_MS = 5000

const ACTIONS: Record<string, AdminState> = { drain: 'drain', maint: 'maint', enable: 'enabled' }

type Handler = (req: IncomingMessage, res: ServerResponse, params: readonly string[], url: URL) => void | Promise<void>

interface Route {
  readonly path: RegExp
  /** By method; a GET route answers HEAD too. */
  readonly methods: Readonly<Record<string, Handler>>
  /** Served without the token: the page and its assets carry no data. */
  readonly open?: boolean
}

const PAGE_HEADERS = { 'content-security-policy': PAGE_CSP, 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache', 'referrer-policy': 'no-referrer' }

/**
 * Starts the admin endpoint `config` asks for (undefined when it asks for none). When it cannot
 * listen, the runtime is stopped first, so a failed start leaves nothing running.
 */
export async function startAdmin(config: AdminConfig | undefined, runtime: Runtime, logger: Logger): Promise<AdminServer | undefined> {
  if (!config) return undefined
  try {
    const admin = new AdminServer(config, runtime, logger)
    await admin.listen()
    return admin
  } catch (err) {
    await runtime.stop(0)
    throw err
  }
}

export class AdminServer {
  readonly #server: http.Server
  readonly #token: Buffer | undefined
  readonly #runtime: Runtime
  readonly #logger: Logger
  readonly #config: AdminConfig
  readonly #routes: readonly Route[]
  readonly #rates = new Rates()
  readonly #streams = new EventStreams()
  #ticker: NodeJS.Timeout | undefined
  /** Pools whose state changes push an event at once (a reload or DNS refresh brings new ones). */
  readonly #watched = new WeakSet<Pool>()
  #pushSoon: NodeJS.Timeout | undefined

  constructor(config: AdminConfig, runtime: Runtime, logger: Logger) {
    this.#config = config
    this.#runtime = runtime
    this.#logger = logger.child({ component: 'admin' })
    this.#token = config.tokenFile ? Buffer.from(readFileSync(config.tokenFile, 'utf8').trim()) : undefined
    this.#server = http.createServer((req, res) => void this.#handle(req, res))
    this.#routes = [
      { path: /^\/$/, open: true, methods: { GET: (_q, res) => asset(res, 'text/html; charset=utf-8', PAGE_HTML) } },
      { path: /^\/page\.js$/, open: true, methods: { GET: (_q, res) => asset(res, 'text/javascript; charset=utf-8', PAGE_SCRIPT) } },
      { path: /^\/page\.css$/, open: true, methods: { GET: (_q, res) => asset(res, 'text/css; charset=utf-8', PAGE_STYLE) } },
      { path: /^\/events$/, methods: { GET: (req, res) => this.#events(req, res) } },
      { path: /^\/status$/, methods: { GET: (_q, res) => send(res, 200, statusOf(this.#runtime)) } },
      { path: /^\/healthz$/, methods: { GET: (_q, res) => this.#healthz(res) } },
      {
        path: /^\/metrics$/,
        methods: {
          GET: (_q, res) => {
            res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
            res.end(renderMetrics(this.#runtime))
          },
        },
      },
      { path: /^\/sessions\/([^/]+)$/, methods: { GET: (_q, res, p, url) => this.#sessions(res, p[0]!, Number(url.searchParams.get('limit') ?? SESSIONS_LIMIT)) } },
      { path: /^\/backends\/([^/]+)\/([^/]+)\/weight$/, methods: { POST: (req, res, p, url) => this.#setWeight(req, res, p[0]!, p[1]!, url) } },
      { path: /^\/backends\/([^/]+)\/([^/]+)\/([^/]+)$/, methods: { POST: (_q, res, p) => this.#setState(res, p[0]!, p[1]!, p[2]!) } },
    ]
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
    this.#rates.sample(this.#runtime)
    this.#watchPools()
    this.#ticker = setInterval(this.#tick, TICK_MS)
    this.#ticker.unref()
  }

  close(): Promise<void> {
    clearInterval(this.#ticker)
    clearTimeout(this.#pushSoon)
    this.#streams.close()
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }

  /** Once a second: the sparklines' sample, then one state event shared by every open page. */
  readonly #tick = (): void => {
    try {
      this.#rates.sample(this.#runtime)
      this.#watchPools()
      this.#push()
    } catch (err) {
      this.#logger.error({ err }, 'status feed failed')
    }
  }

  #push(): void {
    if (this.#streams.size > 0) this.#streams.broadcast(sseEvent('state', this.#pageState()))
  }

  /**
   * A backend going down or drained shows on open pages at once, not at the next tick; changes
   * arriving together (a whole pool failing) are sent as one event.
   */
  #watchPools(): void {
    for (const h of this.#runtime.services.values()) {
      if (this.#watched.has(h.pool)) continue
      this.#watched.add(h.pool)
      h.pool.onStateChange(this.#onStateChange)
    }
  }

  readonly #onStateChange = (): void => {
    if (this.#pushSoon !== undefined || this.#streams.size === 0) return
    this.#pushSoon = setTimeout(() => {
      this.#pushSoon = undefined
      try {
        this.#push()
      } catch (err) {
        this.#logger.error({ err }, 'status feed failed')
      }
    }, 20)
  }

  #pageState(): unknown {
    return { at: Date.now(), writes: this.#token !== undefined, status: statusOf(this.#runtime), rates: this.#rates.latest() }
  }

  #events(req: IncomingMessage, res: ServerResponse): void {
    this.#streams.open(req, res, sseEvent('history', { rates: this.#rates.history() }) + sseEvent('state', this.#pageState()))
  }

  #authorized(req: IncomingMessage): boolean {
    if (!this.#token) return true
    const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer /, ''))
    return given.length === this.#token.length && timingSafeEqual(given, this.#token)
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://admin')
      let params: string[] | undefined
      const route = this.#routes.find((r) => (params = r.path.exec(url.pathname)?.slice(1)) !== undefined)
      if (!route || !params) {
        return send(res, 404, { error: 'not found: try GET / (the status page), GET /status, GET /healthz, GET /metrics, GET /events, GET /sessions/{service}, POST /backends/{service}/{address}/{drain|maint|enable|weight}' })
      }
      const method = req.method === 'HEAD' && route.methods.GET ? 'GET' : req.method ?? ''
      const handler = route.methods[method]
      if (!handler) {
        const allow = Object.keys(route.methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])).join(', ')
        res.setHeader('allow', allow)
        return send(res, 405, { error: `method ${req.method} not allowed on ${url.pathname}: use ${allow}` })
      }
      if (!route.open && !this.#authorized(req)) {
        res.setHeader('www-authenticate', 'Bearer')
        return send(res, 401, { error: 'missing or wrong bearer token' })
      }
      if (method !== 'GET' && crossSite(req)) return send(res, 403, { error: 'cross-site request refused' })
      let decoded: string[]
      try {
        decoded = params.map((p) => decodeURIComponent(p))
      } catch {
        return send(res, 400, { error: 'bad percent-encoding in the path' })
      }
      await handler(req, res, decoded, url)
    } catch (err) {
      this.#logger.error({ err }, 'admin request failed')
      if (!res.headersSent) send(res, 500, { error: 'internal error' })
      else res.destroy()
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

  #backend(res: ServerResponse, serviceName: string, address: string): { pool: Pool; id: number } | undefined {
    const service = this.#runtime.services.get(serviceName)
    if (!service) return void send(res, 404, { error: `no service "${serviceName}"` })
    const backend = service.pool.byName(address)
    if (!backend) return void send(res, 404, { error: `service ${serviceName} has no backend "${address}" (have: ${service.pool.backends.map((b) => b.name).join(', ')})` })
    return { pool: service.pool, id: backend.id }
  }

  #setState(res: ServerResponse, serviceName: string, address: string, action: string): void {
    const admin = ACTIONS[action]
    if (!admin) return send(res, 400, { error: `unknown action "${action}": use drain, maint, enable or weight` })
    const found = this.#backend(res, serviceName, address)
    if (!found) return
    const backend = found.pool.backends[found.id]!
    const from = backend.state
    found.pool.setAdmin(backend.id, admin, `admin API: ${action}`)
    this.#logger.info({ service: serviceName, backend: address, action, from, to: backend.state }, 'admin action')
    send(res, 200, { service: serviceName, backend: address, from, to: backend.state, active: found.pool.active[backend.id] ?? 0 })
  }

  /** `{"weight": N}` (or `?weight=N`): the backend's weight until the next reload. */
  async #setWeight(req: IncomingMessage, res: ServerResponse, serviceName: string, address: string, url: URL): Promise<void> {
    let raw: unknown = url.searchParams.get('weight') ?? undefined
    if (raw === undefined) {
      const body = await readBody(req)
      if (body === undefined) return send(res, 413, { error: `request body over ${MAX_BODY_BYTES} bytes or too slow` })
      try {
        raw = (JSON.parse(body) as { weight?: unknown } | null)?.weight
      } catch {
        return send(res, 400, { error: 'body must be JSON like {"weight": 3}' })
      }
    }
    const weight = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
      return send(res, 400, { error: `weight ${JSON.stringify(raw ?? null)}: must be an integer 1-${MAX_WEIGHT} (drain takes a backend out)` })
    }
    const found = this.#backend(res, serviceName, address)
    if (!found) return
    const backend = found.pool.backends[found.id]!
    const from = backend.weight
    found.pool.setWeight(backend.id, weight)
    this.#logger.info({ service: serviceName, backend: address, action: 'weight', from, to: backend.weight }, 'admin action')
    send(res, 200, { service: serviceName, backend: address, from, to: backend.weight, configWeight: backend.configWeight })
  }
}

/**
 * A browser POST from another site (a page the operator has open elsewhere) carries an Origin
 * or Sec-Fetch-Site naming it; refuse it so a page cannot drain a backend behind the
 * operator's back. Clients that are not browsers send neither.
 */
function crossSite(req: IncomingMessage): boolean {
  if (req.headers['sec-fetch-site'] === 'cross-site') return true
  const origin = req.headers.origin
  if (origin === undefined) return false
  try {
    return new URL(origin).host !== req.headers.host
  } catch {
    return true
  }
}

/** The body as text, or undefined when it is larger than MAX_BODY_BYTES or does not arrive in time. */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let settled = false
    const timer = setTimeout(() => done(undefined), BODY_TIMEOUT_MS)
    const done = (value: string | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.removeAllListeners('data')
      if (value === undefined) req.resume()
      resolve(value)
    }
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) return done(undefined)
      chunks.push(chunk)
    })
    req.once('end', () => done(Buffer.concat(chunks).toString('utf8')))
    req.once('error', () => done(undefined))
  })
}

function asset(res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, { 'content-type': type, ...PAGE_HEADERS })
  res.end(body)
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body, null, 2) + '\n')
}
