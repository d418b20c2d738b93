/**
 * The UDP data path of one service (DESIGN: the TCP stages with a session in place of a
 * connection). A session — client `addr:port` → a connected upstream socket — is created on the
 * first datagram, picks its backend once through the pool, and ends on idle timeout, after the
 * expected replies, or when its backend goes away. Replies go back from the listening socket.
 *
 * Hot path: one Map lookup per datagram, no closures, no logging; the only timer is one coarse
 * idle sweep per service.
 */
import dgram, { type RemoteInfo, type Socket } from 'node:dgram'
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns'
import { isIP } from 'node:net'
import type { Logger } from 'pino'
import { canonicalIp, formatHostPort, type HostPort } from '../address/index.js'
import type { ServiceConfig } from '../config/index.js'
import { errorCode } from '../errors.js'
import { DataPath, FlowTable, bindWithFallback, dispositionOf } from '../flow/index.js'
import { datagramHeader } from '../proxy-protocol/index.js'
import type { Backend, Pool, StateChange } from '../pool/index.js'
import { UdpSession, type SessionCloseReason, type SessionOwner } from './session.js'

/** The idle sweep runs every idle/4, within these bounds: coarse on purpose, one timer per service. */
const MIN_SWEEP_MS = 10
const MAX_SWEEP_MS = 5_000

export interface UdpStats {
  sessionsCreated: number
  sessionsClosed: number
  /** New flows dropped at admission (`udpMaxSessions`, per-source limits, ACLs): see admission.refused. */
  droppedMaxSessions: number
  /** New flows dropped because no backend was usable. */
  noBackend: number
  datagramsIn: number
  datagramsOut: number
  bytesIn: number
  bytesOut: number
  /** ICMP port/host unreachable seen on upstream sockets (ECONNREFUSED, EHOSTUNREACH…). */
  icmpErrors: number
  /** Errors caught in the listening socket's handler (a bug guard: never expected). */
  handlerErrors: number
}

export interface UdpSessionInfo {
  client: string
  backend: string
  ageMs: number
  idleMs: number
  datagramsIn: number
  datagramsOut: number
  bytesIn: number
  bytesOut: number
}

export class UdpService extends DataPath implements SessionOwner {
  readonly #sockets: Socket[] = []
  readonly #sessions = new FlowTable<string, UdpSession>()
  readonly stats: UdpStats = {
    sessionsCreated: 0, sessionsClosed: 0, droppedMaxSessions: 0, noBackend: 0, datagramsIn: 0, datagramsOut: 0,
    bytesIn: 0, bytesOut: 0, icmpErrors: 0, handlerErrors: 0,
  }
  #sweep: NodeJS.Timeout | undefined
  #bufferWarned = false

  constructor(config: ServiceConfig, pool: Pool, logger: Logger) {
    super(config, pool, logger, 'udp')
  }

  get activeSessions(): number {
    return this.#sessions.size
  }

  /** Same as activeSessions: the runtime counts sessions with connections. */
  get activeConnections(): number {
    return this.#sessions.size
  }

  /** The addresses actually bound (port 0 resolved), in listen order. */
  addresses(): HostPort[] {
    return this.#sockets.map((s) => {
      const a = s.address()
      return { host: a.address, port: a.port, family: a.family === 'IPv6' ? 6 : 4 }
    })
  }

  /**
   * Binds every listen address. `ports`, when given, replaces the configured ports one for one —
   * with `tcp,udp` and port 0 the UDP socket must take the port TCP was given.
   */
  async listen(ports?: readonly number[]): Promise<void> {
    const listen = this.config.listen
    for (let i = 0; i < listen.length; i++) {
      const address = listen[i]!
      const port = ports?.[i] ?? address.port
      this.#sockets.push(await bindWithFallback({ ...address, port }, 'udp ', (a) => this.#bind(a)))
    }
    const sweepMs = Math.min(MAX_SWEEP_MS, Math.max(MIN_SWEEP_MS, Math.floor(this.config.udpIdleTimeoutMs / 4)))
    this.#sweep = setInterval(this.#sweepIdle, sweepMs)
    this.#sweep.unref()
  }

  async #bind(address: HostPort): Promise<Socket> {
    const v6 = address.family === 6 || address.host.includes(':')
    // No reuseAddr: on UDP it lets a second process steal datagrams rather than share them.
    const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: false, lookup: literalLookup })
    try {
      await bindOnce(socket, address.host, address.port)
    } catch (err) {
      try {
        socket.close()
      } catch {
        // never bound
      }
      throw err
    }
    this.#setBuffers(socket)
    socket.on('message', this.#onMessage)
    socket.on('error', this.#onSocketError)
    return socket
  }

  /** Large buffers absorb bursts between event-loop turns; the kernel may cap them (rmem_max). */
  #setBuffers(socket: Socket): void {
    const wanted = this.config.udpBufferBytes
    try {
      socket.setRecvBufferSize(wanted)
      socket.setSendBufferSize(wanted)
    } catch (err) {
      this.log.logger.warn({ code: errorCode(err), wanted }, 'cannot set UDP socket buffer sizes')
      return
    }
    // Linux stores and reports double the value asked for (the extra is its bookkeeping), capped
    // at net.core.rmem_max; halve it there so "got" compares with "wanted".
    const reported = socket.getRecvBufferSize()
    const got = process.platform === 'linux' ? Math.floor(reported / 2) : reported
    if (got < wanted && !this.#bufferWarned) {
      this.#bufferWarned = true
      this.log.logger.warn(
        { wanted, got, hint: 'raise net.core.rmem_max and net.core.wmem_max (sysctl) to allow larger UDP buffers' },
        'kernel capped the UDP receive buffer',
      )
    }
  }

  /** Stops receiving: closes the listening sockets. Sessions stay until closeAll (replies would have no way back). */
  async stopAccepting(): Promise<void> {
    const sockets = this.#sockets.splice(0)
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => {
      try {
        s.close(() => resolve())
      } catch {
        resolve()
      }
    })))
    if (this.#sweep) clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  /** Stops accepting and ends every session with `shutdown`. */
  async close(): Promise<void> {
    await this.stopAccepting()
    this.closeAll('shutdown')
    this.log.logger.info({ ...this.stats }, 'udp service stopped')
  }

  /** Ends every session now. */
  closeAll(reason: SessionCloseReason): void {
    for (const session of this.#sessions.values()) this.#end(session, reason)
  }

  /** Resolves when no session is left (or at once if none). */
  whenIdle(): Promise<void> {
    return this.#sessions.whenIdle()
  }

  /** A snapshot for the admin API: one entry per session. */
  sessions(): UdpSessionInfo[] {
    const now = Date.now()
    const out: UdpSessionInfo[] = []
    for (const s of this.#sessions.values()) {
      out.push({
        client: formatHostPort(s.clientIp, s.clientPort),
        backend: s.backend.name,
        ageMs: now - s.startedAt,
        idleMs: now - s.lastActivity,
        datagramsIn: s.datagramsIn,
        datagramsOut: s.datagramsOut,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
      })
    }
    return out
  }

  // The listening socket's handler: whatever a client sends, this must not throw.
  readonly #onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    try {
      this.#forward(msg, rinfo)
    } catch (err) {
      this.stats.handlerErrors++
      this.log.warn({ err, client: formatHostPort(rinfo.address, rinfo.port) }, 'udp datagram handler failed')
    }
  }

  #forward(msg: Buffer, rinfo: RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`
    const now = Date.now()
    let session = this.#sessions.get(key)
    // Lazily, on the session's next datagram: a session whose backend left moves if the policy
    // says so (lib/flow/policy: drain keeps it; udpKeepOnDown keeps it on down and maint).
    if (session !== undefined && !session.backend.usable && dispositionOf(session.backend.state, session.context.config, true, true) === 'move') {
      this.#end(session, session.backend.state === 'maint' ? 'backend-maint' : 'backend-down')
      session = undefined
    }
    if (session === undefined) {
      session = this.#open(key, rinfo, now)
      if (session === undefined) return
    }
    session.lastActivity = now
    session.datagramsIn++
    session.bytesIn += msg.length
    this.stats.datagramsIn++
    this.stats.bytesIn += msg.length
    session.send(msg)
  }

  #open(key: string, rinfo: RemoteInfo, now: number): UdpSession | undefined {
    const context = this.context
    const refused = context.admission.admit(rinfo.address)
    if (refused !== null) {
      this.stats.droppedMaxSessions++
      this.log.refused(refused, { client: formatHostPort(rinfo.address, rinfo.port) }, 'udp flow dropped')
      return undefined
    }
    const ip = canonicalIp(rinfo.address)
    const backend = context.pool.pick(context.key(ip, rinfo.port))
    if (backend === undefined) {
      context.admission.release(rinfo.address)
      this.stats.noBackend++
      return undefined
    }
    const listener = this.#listenerFor(rinfo)
    let session: UdpSession | undefined
    try {
      if (listener !== undefined) session = new UdpSession(this, key, rinfo.address, ip, rinfo.port, backend, context, listener, now)
    } catch (err) {
      // EMFILE and friends: our shortage, not the backend's.
      this.log.warn({ code: errorCode(err), backend: backend.name }, 'cannot open an upstream UDP socket')
    }
    if (session === undefined) {
      context.admission.release(rinfo.address)
      return undefined
    }
    const config = context.config
    if (config.proxyProtocol === 'v2') {
      // The listener's bound address is the destination: Node gives no per-datagram local address.
      const local = session.listener.address()
      session.proxyHeader = datagramHeader({ address: ip, port: rinfo.port }, { address: local.address, port: local.port }, 'v2', { crc32c: config.proxyV2Crc32c })
      session.proxyHeaderOnce = config.proxyUdpFirstOnly
    }
    this.#sessions.set(key, session)
    this.stats.sessionsCreated++
    context.pool.connectionOpened(backend)
    return session
  }

  /**
   * The listening socket a reply leaves from. With one listener (the common case) it is that one;
   * with several, the one matching the client's family (replies keep the client's 4-tuple only
   * on the same socket, so a multi-listen UDP service should listen once per family).
   */
  #listenerFor(rinfo: RemoteInfo): Socket | undefined {
    const sockets = this.#sockets
    if (sockets.length === 1) return sockets[0]
    for (const s of sockets) if (s.address().family === rinfo.family) return s
    return sockets[0]
  }

  /** A datagram from the backend: back to the client, from the listening socket. */
  reply(session: UdpSession, msg: Buffer): void {
    session.lastActivity = Date.now()
    session.datagramsOut++
    session.bytesOut += msg.length
    this.stats.datagramsOut++
    this.stats.bytesOut += msg.length
    try {
      session.listener.send(msg, session.clientPort, session.replyAddress)
    } catch {
      // The listener closed (stopping) before this session was ended: the reply has no way back.
      this.#end(session, 'shutdown')
      return
    }
    // nginx proxy_responses: N replies expected per client datagram; all in → the exchange is over.
    const responses = session.context.config.udpResponses
    if (responses > 0 && session.datagramsOut >= session.datagramsIn * responses) this.#end(session, 'responses')
  }

  /** An error on the upstream socket: ICMP unreachable is a passive failure of the backend. */
  upstreamError(session: UdpSession, err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'error'
    if (!session.context.backendFailed(session.backend, code)) {
      this.#end(session, 'local-error')
      return
    }
    this.stats.icmpErrors++
    // The next datagram opens a new session; the pool steers it around this backend meanwhile.
    this.#end(session, 'backend-error')
  }

  readonly #sweepIdle = (): void => {
    const deadline = Date.now() - this.config.udpIdleTimeoutMs
    for (const session of this.#sessions.values()) if (session.lastActivity <= deadline) this.#end(session, 'idle-timeout')
  }

  readonly #onSocketError = (err: NodeJS.ErrnoException): void => {
    this.log.warn({ code: err.code, active: this.#sessions.size }, 'udp socket error')
  }

  /** Cuts sessions at once when the policy says cut; moving happens lazily, on the next datagram. */
  protected backendChanged(change: StateChange): void {
    if (change.to !== 'down') return
    for (const s of this.#sessions.values()) {
      if (s.backend === change.backend && dispositionOf(change.to, s.context.config, true, true) === 'cut') this.#end(s, 'backend-down')
    }
  }

  #end(session: UdpSession, reason: SessionCloseReason): void {
    if (session.closed) return
    session.close()
    this.#sessions.delete(session.key)
    this.stats.sessionsClosed++
    const backend: Backend = session.backend
    session.context.admission.release(session.replyAddress)
    session.pool.connectionClosed(backend, session.bytesIn, session.bytesOut)
    if (!this.log.wantsClose(reason)) return
    this.log.close(reason, {
      client: formatHostPort(session.clientIp, session.clientPort),
      backend: backend.name,
      datagramsIn: session.datagramsIn,
      datagramsOut: session.datagramsOut,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      durationMs: Date.now() - session.startedAt,
      reason,
    }, 'session closed')
  }
}

function bindOnce(socket: Socket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    socket.once('error', onError)
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.removeListener('error', onError)
      resolve()
    })
  })
}


type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void

/**
 * dgram looks up the address of every send() to an address: with the default dns.lookup even an
 * IP literal costs a process.nextTick before the datagram leaves. Replies go to the literal
 * address a client sent from, so answer at once and send in the same turn; anything else (never
 * expected here) still goes to dns.lookup.
 */
function literalLookup(address: string, options: LookupOneOptions | number, callback: LookupCallback): void {
  const literal = isIP(address)
  if (literal !== 0) return callback(null, address, literal)
  // dgram passes the socket's family as a number (the types say options)
  dnsLookup(address, typeof options === 'number' ? { family: options } : options, callback)
}
