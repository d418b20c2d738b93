/**
 * The TCP data path of one service (DESIGN: listener → admit → accept-proxy → key → pick →
 * connect → header → splice → close). Policy — which backend, whether it is usable — is the
 * pool's; this file only moves connections along those stages.
 */
import net, { type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { CidrList, canonicalIp, formatHostPort, type HostPort } from '../address/index.js'
import type { ServiceConfig } from '../config/index.js'
import { DataPath, FlowTable, bindWithFallback, dispositionOf } from '../flow/index.js'
import type { AcceptProxyOptions, Endpoint } from '../proxy-protocol/index.js'
import type { Backend, Pool, StateChange } from '../pool/index.js'
import { TcpConnection, ignore, type ConnectionOwner, type TcpCloseReason } from './connection.js'
import type { CloseReason, SpliceResult } from './splice.js'

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
  /** Connections that waited in a backend's queue (maxConns), and those refused or timed out there. */
  queued: number
  queueTimeouts: number
  backendFull: number
  closed: number
}

export type { TcpCloseReason } from './connection.js'

export class TcpService extends DataPath implements ConnectionOwner {
  readonly #servers: Server[] = []
  readonly #connections = new FlowTable<TcpConnection, TcpConnection>()
  readonly stats: TcpStats = { accepted: 0, earlyResets: 0, rejectedMaxConns: 0, noBackend: 0, connectFailures: 0, retries: 0, queued: 0, queueTimeouts: 0, backendFull: 0, closed: 0 }
  /** Sources whose PROXY headers are believed; undefined = accept-proxy off. Built once per config. */
  #trusted: CidrList | undefined
  #acceptOptions: AcceptProxyOptions

  constructor(config: ServiceConfig, pool: Pool, logger: Logger) {
    super(config, pool, logger, 'tcp')
    this.#trusted = trustedOf(config)
    this.#acceptOptions = acceptOptionsOf(config)
  }

  get activeConnections(): number {
    return this.#connections.size
  }

  override update(config: ServiceConfig): void {
    super.update(config)
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
    for (const address of this.config.listen) this.#servers.push(await bindWithFallback(address, '', (a) => this.#bind(a)))
  }

  async #bind(address: HostPort): Promise<Server> {
    // The destination a sent PROXY header carries: fixed for a listener bound to one address,
    // asked of each socket for a wildcard one (a dual-stack `::` sees both families).
    const wildcard = address.host === '::' || address.host === '0.0.0.0'
    const listener: { local: Endpoint | undefined } = { local: undefined }
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (client: Socket) =>
      this.#onConnection(client, listener.local),
    )
    const options: net.ListenOptions & { reusePort?: boolean } = { host: address.host, port: address.port, backlog: this.config.backlog }
    if (address.host === '::') options.ipv6Only = false
    if (this.config.reusePort && HAS_REUSE_PORT) options.reusePort = true
    await listenOnce(server, options)
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

  /** Connections proxied to `backend` so far: the node plane counts each at open. */
  connectionsTotal(backend: Backend): number {
    return backend.connectionsTotal
  }

  /**
   * Bytes moved so far by connections still open, by backend name (`[fromClient, fromBackend]`).
   * Counters reach the pool only at close; the admin endpoint adds these at scrape time, so a
   * connection that lives for hours shows its traffic with no work per chunk.
   */
  openBytes(): Map<string, [number, number]> {
    const out = new Map<string, [number, number]>()
    for (const c of this.#connections.values()) {
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
    for (const c of this.#connections.values()) c.abort(reason)
  }

  /** Resolves when no connection is left (or at once if none). */
  whenIdle(): Promise<void> {
    return this.#connections.whenIdle()
  }

  readonly #onServerError = (err: NodeJS.ErrnoException): void => {
    // EMFILE/ENFILE on accept: libuv already accepted-and-closed the pending connection with its
    // reserve fd; the server keeps listening. Say so, once a second at most.
    this.log.warn({ code: err.code, active: this.#connections.size }, 'accept failed')
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
    const context = this.context
    const port = client.remotePort ?? 0
    // admit: by the peer's address (before any accepted PROXY header, as DESIGN orders it).
    const refused = context.admission.admit(remote)
    if (refused !== null) {
      if (refused === 'max-conns') this.stats.rejectedMaxConns++
      client.on('error', ignore)
      client.destroy()
      this.log.refused(refused, { client: formatHostPort(remote, port) })
      return
    }
    const ip = canonicalIp(remote)
    // Matched once: a header from a source outside the trusted CIDRs is never believed.
    const trusted = this.#trusted !== undefined && this.#trusted.contains(ip)
    if (this.#trusted !== undefined && !trusted && context.config.acceptProxyStrict) {
      context.admission.release(remote)
      client.on('error', ignore)
      client.destroy()
      this.log.refused('proxy-untrusted', { client: formatHostPort(ip, port) })
      return
    }
    const connection = new TcpConnection(this, context, client, remote, ip, port, local)
    this.#connections.set(connection, connection)
    if (trusted) connection.acceptHeader(this.#acceptOptions)
    else connection.start()
  }

  /** A backend left the usable set: each of its connections stays, moves or is cut (lib/flow/policy). */
  protected backendChanged(change: StateChange): void {
    if (change.to === 'up' || change.to === 'drain') return
    for (const c of this.#connections.values()) {
      if (c.backend !== change.backend) continue
      const disposition = dispositionOf(change.to, c.context.config, c.established, false)
      if (disposition === 'cut') c.abort('backend-down')
      else if (disposition === 'move') c.redirect()
    }
  }

  /** Called by a connection once, when both sockets are closed. */
  connectionFinished(connection: TcpConnection, reason: TcpCloseReason, result: SpliceResult | undefined): void {
    this.#connections.delete(connection)
    this.stats.closed++
    const context = connection.context
    context.admission.release(connection.peer)
    const backend = connection.backend
    if (backend && result) context.pool.connectionClosed(backend, result.bytesFromClient, result.bytesFromBackend)
    if (!this.log.wantsClose(reason)) return
    this.log.close(reason, {
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
    }, 'connection closed')
  }
}

function trustedOf(config: ServiceConfig): CidrList | undefined {
  return config.acceptProxy.length > 0 ? new CidrList(config.acceptProxy) : undefined
}

function acceptOptionsOf(config: ServiceConfig): AcceptProxyOptions {
  return { timeoutMs: config.acceptProxyTimeoutMs, maxV2Length: config.acceptProxyMaxLength }
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

