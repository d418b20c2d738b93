/**
 * The TCP data path of one service (DESIGN: listener → admit → accept-proxy → key → pick →
 * connect → header → splice → close). Policy — which backend, whether it is usable — is the
 * pool's; this file only moves connections along those stages.
 */
import net, { type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { CidrList, canonicalIp, formatHostPort, type HostPort } from '../address/index.js'
import { keyHash } from '../balance/index.js'
import type { ServiceConfig } from '../config/index.js'
import { errorCode, ListenError, LOCAL_ERROR_CODES, listenProblem, ProxyHeaderError } from '../errors.js'
import {
  type AcceptedProxy,
  type AcceptProxyOptions,
  type Endpoint,
  type ProxyHeader,
  type Tlv,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_CRC32C,
  PP2_TYPE_NOOP,
  PP2_TYPE_UNIQUE_ID,
  acceptProxy,
  encodeV1,
  encodeV2,
  makeUniqueId,
  uniqueIdTlv,
} from '../proxy-protocol/index.js'
import { RateLimitedLog } from '../log/rate-limit.js'
import type { Backend, Pool, StateChange } from '../pool/index.js'
import { BackendReader, splice, type CloseReason, type SpliceHandle, type SpliceResult } from './splice.js'

/** Feature-detected: Node ≥ 22.12 / 23.1 accept `reusePort` in server.listen(). */
export const HAS_REUSE_PORT = (() => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)
})()

export interface TcpStats {
  accepted: number
  /** Connections reset before the accept callback ran (no remote address): counted, dropped. */
  earlyResets: number
  rejectedMaxConns: number
  noBackend: number
  connectFailures: number
  retries: number
  closed: number
}

export type TcpCloseReason = CloseReason | 'no-backend' | 'connect-failed' | 'max-conns' | 'proxy-header' | 'proxy-untrusted'

/**
 * TLVs of an accepted header that are never forwarded as they are: CRC32C covers the old header
 * only, UNIQUE_ID is ours per hop (the upstream's id is in its own logs), AUTHORITY is re-sent
 * on its own, NOOP is padding.
 */
const NOT_FORWARDED = new Set([PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, PP2_TYPE_AUTHORITY, PP2_TYPE_NOOP])

export class TcpService {
  readonly name: string
  readonly pool: Pool
  #config: ServiceConfig
  readonly #logger: Logger
  readonly #servers: Server[] = []
  readonly #connections = new Set<TcpConnection>()
  readonly #acceptErrors: RateLimitedLog
  readonly stats: TcpStats = { accepted: 0, earlyResets: 0, rejectedMaxConns: 0, noBackend: 0, connectFailures: 0, retries: 0, closed: 0 }
  #closedListeners: Array<() => void> = []
  /** Sources whose PROXY headers are believed; undefined = accept-proxy off. Built once per config. */
  #trusted: CidrList | undefined
  #acceptOptions: AcceptProxyOptions
  readonly #logInfo: boolean

  constructor(config: ServiceConfig, pool: Pool, logger: Logger) {
    this.name = config.name
    this.pool = pool
    this.#config = config
    this.#trusted = trustedOf(config)
    this.#acceptOptions = acceptOptionsOf(config)
    this.#logger = logger.child({ service: config.name, proto: 'tcp' })
    this.#logInfo = this.#logger.isLevelEnabled('info')
    this.#acceptErrors = new RateLimitedLog(this.#logger)
    pool.onStateChange(this.#onBackendState)
  }

  get activeConnections(): number {
    return this.#connections.size
  }

  get config(): ServiceConfig {
    return this.#config
  }

  /**
   * Reload: new connections use the new config from now on. The pool is the service's for its
   * whole life (updated in place); the listening sockets stay open throughout.
   */
  update(config: ServiceConfig): void {
    this.#config = config
    this.#trusted = trustedOf(config)
    this.#acceptOptions = acceptOptionsOf(config)
  }

  /** The addresses actually bound (port 0 resolved), in listen order. */
  addresses(): HostPort[] {
    return this.#servers.map((s) => {
      const a = s.address() as net.AddressInfo
      return { host: a.address, port: a.port, family: a.family === 'IPv6' ? 6 : 4 }
    })
  }

  async listen(): Promise<void> {
    for (const address of this.#config.listen) this.#servers.push(await this.#bind(address))
  }

  async #bind(address: HostPort): Promise<Server> {
    // The destination a sent PROXY header carries: fixed for a listener bound to one address,
    // asked of each socket for a wildcard one (a dual-stack `::` sees both families).
    const wildcard = address.host === '::' || address.host === '0.0.0.0'
    const listener: { local: Endpoint | undefined } = { local: undefined }
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (client: Socket) =>
      this.#onConnection(client, listener.local),
    )
    const options: net.ListenOptions & { reusePort?: boolean } = { host: address.host, port: address.port, backlog: this.#config.backlog }
    if (address.host === '::') options.ipv6Only = false
    if (this.#config.reusePort && HAS_REUSE_PORT) options.reusePort = true
    try {
      await listenOnce(server, options)
    } catch (err) {
      const code = errorCode(err)
      // `:port` means every address; on a host without IPv6 that is 0.0.0.0.
      if (address.host === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
        return this.#bind({ host: '0.0.0.0', port: address.port, family: 4 })
      }
      throw new ListenError(formatHostPort(address.host, address.port), listenProblem(code), err)
    }
    server.on('error', this.#onServerError)
    if (!wildcard) {
      const bound = server.address() as net.AddressInfo
      listener.local = { address: bound.address, port: bound.port }
    }
    return server
  }

  /**
   * Stops accepting; established connections go on. Does not wait for them: a server's close
   * callback fires only after its last connection ends, and draining is the caller's business
   * (whenIdle, closeAll). The listening sockets are closed when this returns.
   */
  stopAccepting(): Promise<void> {
    for (const s of this.#servers) if (s.listening) s.close()
    return Promise.resolve()
  }

  /**
   * Bytes moved so far by connections still open, by backend name (`[fromClient, fromBackend]`).
   * Counters reach the pool only at close; the admin endpoint adds these at scrape time, so a
   * connection that lives for hours shows its traffic with no work per chunk.
   */
  openBytes(): Map<string, [number, number]> {
    const out = new Map<string, [number, number]>()
    for (const c of this.#connections) {
      const moved = c.bytesMoved()
      if (moved === undefined) continue
      const sum = out.get(moved.backend)
      if (sum === undefined) out.set(moved.backend, [moved.fromClient, moved.fromBackend])
      else {
        sum[0] += moved.fromClient
        sum[1] += moved.fromBackend
      }
    }
    return out
  }

  /** Ends every connection now, e.g. when the drain timeout runs out. */
  closeAll(reason: CloseReason): void {
    for (const c of this.#connections) c.abort(reason)
  }

  /** Resolves when no connection is left (or at once if none). */
  whenIdle(): Promise<void> {
    if (this.#connections.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#closedListeners.push(resolve))
  }

  readonly #onServerError = (err: NodeJS.ErrnoException): void => {
    // EMFILE/ENFILE on accept: libuv already accepted-and-closed the pending connection with its
    // reserve fd; the server keeps listening. Say so, once a second at most.
    this.#acceptErrors.warn({ code: err.code, active: this.#connections.size }, 'accept failed')
  }

  readonly #onConnection = (client: Socket, local: Endpoint | undefined): void => {
    const remote = client.remoteAddress
    if (remote === undefined) {
      // Reset before we got here (health checkers, impatient clients): nothing to serve.
      this.stats.earlyResets++
      client.on('error', ignore)
      client.destroy()
      return
    }
    this.stats.accepted++
    const maxConns = this.#config.maxConns
    if (maxConns > 0 && this.#connections.size >= maxConns) {
      this.stats.rejectedMaxConns++
      client.on('error', ignore)
      client.destroy()
      this.#logger.debug({ client: formatHostPort(remote, client.remotePort ?? 0), reason: 'max-conns' }, 'connection refused')
      return
    }
    const ip = canonicalIp(remote)
    const port = client.remotePort ?? 0
    // Matched once: a header from a source outside the trusted CIDRs is never believed.
    const trusted = this.#trusted !== undefined && this.#trusted.contains(ip)
    if (this.#trusted !== undefined && !trusted && this.#config.acceptProxyStrict) {
      client.on('error', ignore)
      client.destroy()
      this.#logger.info({ client: formatHostPort(ip, port), reason: 'proxy-untrusted' }, 'connection refused')
      return
    }
    const connection = new TcpConnection(this, this.pool, client, ip, port, local)
    this.#connections.add(connection)
    if (trusted) connection.acceptHeader(this.#acceptOptions)
    else connection.start()
  }

  /** key stage: from the real client's address, once per connection. */
  hashOf(ip: string, port: number): number {
    return keyHash(this.#config.hashKey === 'src-ip' ? ip : `${ip}:${port}`)
  }

  /**
   * header stage: the PROXY header for a connection, or undefined when the service sends none.
   * Source is the real client (after accept-proxy, the accepted header's), destination the
   * listener's address.
   */
  proxyHeader(connection: TcpConnection, local: Endpoint | undefined): Buffer | undefined {
    const config = this.#config
    if (config.proxyProtocol === 'none') return undefined
    const src: Endpoint = { address: connection.clientIp, port: connection.clientPort }
    if (config.proxyProtocol === 'v1') return encodeV1(src, local)
    const tlvs: Tlv[] = [uniqueIdTlv(connection.id)]
    const accepted = connection.accepted
    if (accepted !== undefined) {
      for (const tlv of accepted.tlvs) {
        if (tlv.type === PP2_TYPE_AUTHORITY) tlvs.push(tlv)
        else if (config.proxyForwardTlvs && !NOT_FORWARDED.has(tlv.type)) tlvs.push(tlv)
      }
    }
    return encodeV2({ command: 'proxy', transport: 'stream', src, dst: local, tlvs, crc32c: config.proxyV2Crc32c })
  }

  /**
   * A backend went down (or into maint): a connection still connecting (or about to retry) to it moves to the
   * next pick now — it has forwarded nothing, so it loses nothing (issue 12: on-down shutdown
   * used to cut these). `--on-down shutdown` also ends established connections to it.
   */
  readonly #onBackendState = (change: StateChange): void => {
    if (change.to !== 'down' && change.to !== 'maint') return
    const shutdown = change.to === 'down' && this.#config.onDown === 'shutdown'
    for (const c of this.#connections) {
      if (c.backend !== change.backend) continue
      if (c.established) {
        if (shutdown) c.abort('backend-down')
      } else {
        c.redirect()
      }
    }
  }

  /** Called by a connection once, when both sockets are closed. */
  connectionFinished(connection: TcpConnection, reason: TcpCloseReason, result: SpliceResult | undefined): void {
    this.#connections.delete(connection)
    this.stats.closed++
    const backend = connection.backend
    if (backend && result) connection.pool.connectionClosed(backend, result.bytesFromClient, result.bytesFromBackend)
    // The line's object is built only when it will be written (pino: disabled levels cost nothing).
    if (this.#logInfo) this.#logger.info(
      {
        id: connection.id,
        client: formatHostPort(connection.clientIp, connection.clientPort),
        via: connection.via,
        backend: backend?.name ?? null,
        // the accepted header is the upstream balancer's, not the client's
        bytesIn: result ? result.bytesFromClient - connection.headerBytes : 0,
        bytesOut: result?.bytesFromBackend ?? 0,
        durationMs: Date.now() - connection.startedAt,
        attempts: connection.attempts,
        reason,
        proxyError: connection.proxyError,
      },
      'connection closed',
    )
    if (this.#connections.size === 0 && this.#closedListeners.length > 0) {
      const listeners = this.#closedListeners
      this.#closedListeners = []
      for (const l of listeners) l()
    }
  }

  /** connect stage: returns true when the failure was the backend's (a passive observation). */
  connectFailed(pool: Pool, backend: Backend, code: string): boolean {
    this.stats.connectFailures++
    if (LOCAL_ERROR_CODES.has(code)) {
      this.#acceptErrors.warn({ code, backend: backend.name }, 'cannot open a connection to a backend')
      return false
    }
    pool.observeConnectFailure(backend, code)
    return true
  }
}

/** One client connection from accept to close. Holds no closures beyond its bound handlers. */
class TcpConnection {
  readonly #service: TcpService
  /** The pool this connection picks from and is counted in, even if a reload swaps the service's. */
  readonly pool: Pool
  readonly #client: Socket
  /** The real client: the socket's peer, or the source of a believed PROXY header. */
  clientIp: string
  clientPort: number
  /** The upstream balancer that sent a believed PROXY header (its address replaced by the header's). */
  via: string | undefined
  /** Per connection, in the log line and the v2 UNIQUE_ID TLV, so backend logs can be joined. */
  readonly id = makeUniqueId()
  accepted: ProxyHeader | undefined
  headerBytes = 0
  proxyError: string | undefined
  #hash = 0
  readonly #local: Endpoint | undefined
  /** Client bytes that came with the accepted header, written to each backend first. */
  #rest: Buffer | undefined
  #finished = false
  readonly startedAt = Date.now()
  backend: Backend | undefined
  attempts = 0
  #upstream: Socket | undefined
  #reader: BackendReader | undefined
  #tried: Set<number> | null = null
  #splice: SpliceHandle | undefined
  #aborted: CloseReason | undefined

  constructor(service: TcpService, pool: Pool, client: Socket, ip: string, port: number, local: Endpoint | undefined) {
    this.#service = service
    this.pool = pool
    this.#client = client
    this.clientIp = ip
    this.clientPort = port
    this.#local = local
    client.on('error', ignore)
  }

  start(): void {
    this.#hash = this.#service.hashOf(this.clientIp, this.clientPort)
    this.#connectNext()
  }

  /** accept-proxy stage, for a trusted source only: read the header, then start. */
  acceptHeader(options: AcceptProxyOptions): void {
    acceptProxy(this.#client, options).then(this.#onHeader, this.#onHeaderError)
  }

  readonly #onHeader = ({ header, rest }: AcceptedProxy): void => {
    if (this.#finished) return
    this.accepted = header
    this.headerBytes = header.byteLength
    if (rest.length > 0) this.#rest = rest
    // v2 LOCAL, v1 UNKNOWN and unusable families carry no source: the connection's own apply
    if (header.source !== undefined) {
      this.via = formatHostPort(this.clientIp, this.clientPort)
      this.clientIp = canonicalIp(header.source.address)
      this.clientPort = header.source.port
    }
    this.start()
  }

  readonly #onHeaderError = (err: unknown): void => {
    // acceptProxy has destroyed the socket already
    this.proxyError = err instanceof ProxyHeaderError ? err.reason : 'socket-error'
    this.#finish('proxy-header')
  }

  /** What the sockets have read so far, once spliced (counted in the pool at close). */
  bytesMoved(): { backend: string; fromClient: number; fromBackend: number } | undefined {
    if (this.#splice === undefined || this.backend === undefined || this.#upstream === undefined) return undefined
    return { backend: this.backend.name, fromClient: this.#client.bytesRead, fromBackend: this.#upstream.bytesRead }
  }

  /** Spliced to a backend: client bytes may have been forwarded, so it is never retried. */
  get established(): boolean {
    return this.#splice !== undefined
  }

  /**
   * Its backend went down while this connection was connecting: give up that attempt and try
   * the next pick (it counts as a failed attempt, but not as the backend's failure — the
   * prober already decided). Nothing happens before the accept-proxy header or between attempts.
   */
  redirect(): void {
    const upstream = this.#upstream
    if (upstream === undefined || this.#splice !== undefined || this.#finished) return
    this.#dropUpstream(upstream)
    this.#retryOrFinish(this.backend!)
  }

  abort(reason: CloseReason): void {
    if (this.#splice) {
      this.#splice.abort(reason)
      return
    }
    // Still connecting: stop the attempt; the client is closed by #finish.
    this.#aborted = reason
    this.#upstream?.destroy()
    this.#finish(reason)
  }

  #connectNext(): void {
    const service = this.#service
    const backend = this.pool.pick(this.#hash, this.#tried)
    if (!backend) {
      if (this.attempts === 0) service.stats.noBackend++
      this.#finish(this.attempts === 0 ? 'no-backend' : 'connect-failed')
      return
    }
    if (this.attempts > 0) service.stats.retries++
    this.attempts++
    this.backend = backend
    const reader = new BackendReader()
    const upstream = net.connect({ host: backend.address, port: backend.port, allowHalfOpen: true, noDelay: true, onread: reader.onread })
    this.#upstream = upstream
    this.#reader = reader
    // Before the connect completes the socket has no activity, so its idle timer is the
    // connect timeout; it is switched off once connected.
    upstream.setTimeout(service.config.connectTimeoutMs)
    upstream.once('connect', this.#onConnect)
    upstream.once('timeout', this.#onConnectTimeout)
    upstream.once('error', this.#onConnectError)
  }

  readonly #onConnect = (): void => {
    const upstream = this.#upstream!
    upstream.setTimeout(0)
    upstream.removeListener('timeout', this.#onConnectTimeout)
    upstream.removeListener('error', this.#onConnectError)
    const backend = this.backend!
    const service = this.#service
    this.pool.connectionOpened(backend)
    // getsockname only when a header needs the destination (wildcard listeners).
    const header = service.config.proxyProtocol === 'none' ? undefined : service.proxyHeader(this, this.#local ?? localOf(this.#client))
    const rest = this.#rest
    if (header === undefined && rest === undefined) {
      this.#splice = splice(this.#client, upstream, this.#reader!, { idleTimeoutMs: service.config.idleTimeoutMs }, this.#onSpliceDone)
      return
    }
    // Header and the first client bytes in one segment when the client has already spoken; but
    // never wait for it to: with server-speaks-first protocols (MySQL, SMTP) it won't.
    upstream.cork()
    if (header !== undefined) upstream.write(header)
    if (rest !== undefined) upstream.write(rest)
    this.#splice = splice(this.#client, upstream, this.#reader!, { idleTimeoutMs: service.config.idleTimeoutMs }, this.#onSpliceDone)
    setImmediate(uncork, upstream)
  }

  readonly #onConnectTimeout = (): void => {
    this.#connectFailed('timeout')
  }

  readonly #onConnectError = (err: NodeJS.ErrnoException): void => {
    this.#connectFailed(err.code ?? 'error')
  }

  #connectFailed(code: string): void {
    this.#dropUpstream(this.#upstream!)
    if (this.#aborted) return
    const backend = this.backend!
    // This may tip the backend over `fall`: the pool then rebuilds before the retry below, so
    // the retry already picks from what is left (backups included).
    this.#service.connectFailed(this.pool, backend, code)
    this.#retryOrFinish(backend)
  }

  #dropUpstream(upstream: Socket): void {
    upstream.removeListener('connect', this.#onConnect)
    upstream.removeListener('timeout', this.#onConnectTimeout)
    upstream.removeListener('error', this.#onConnectError)
    upstream.on('error', ignore)
    upstream.destroy()
    this.#upstream = undefined
  }

  /**
   * The client is still paused: nothing it sent has been read, so trying another backend loses
   * no byte. Up to `retries` more attempts; once the primaries this connection may use are all
   * tried, the pool hands out backups (HAProxy's `option redispatch`).
   */
  #retryOrFinish(failed: Backend): void {
    if (this.attempts <= this.#service.config.retries) {
      ;(this.#tried ??= new Set()).add(failed.id)
      this.#connectNext()
      return
    }
    this.#finish('connect-failed')
  }

  readonly #onSpliceDone = (result: SpliceResult): void => {
    this.#service.connectionFinished(this, result.reason, result)
  }

  #finish(reason: TcpCloseReason): void {
    if (this.#finished) return
    this.#finished = true
    this.#client.destroy()
    this.#service.connectionFinished(this, reason, undefined)
  }
}

function ignore(): void {}

function trustedOf(config: ServiceConfig): CidrList | undefined {
  return config.acceptProxy.length > 0 ? new CidrList(config.acceptProxy) : undefined
}

function acceptOptionsOf(config: ServiceConfig): AcceptProxyOptions {
  return { timeoutMs: config.acceptProxyTimeoutMs, maxV2Length: config.acceptProxyMaxLength }
}

function uncork(socket: Socket): void {
  socket.uncork()
}

function localOf(socket: Socket): Endpoint | undefined {
  const address = socket.localAddress
  return address === undefined ? undefined : { address, port: socket.localPort ?? 0 }
}

function listenOnce(server: Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(options, () => {
      server.removeListener('error', onError)
      resolve()
    })
  })
}

