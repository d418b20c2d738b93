/**
 * One TCP connection through the stages after admit: accept-proxy → key → pick → connect
 * (retries, redispatch to backups) → header → splice → close. It carries the FlowContext it
 * was accepted with and reports only to its owner (stats, the close).
 */
import net, { type Socket } from 'node:net'
import { canonicalIp, formatHostPort } from '../address/index.js'
import type { ServiceConfig } from '../config/index.js'
import { ProxyHeaderError } from '../errors.js'
import type { FlowContext, RefusalReason } from '../flow/index.js'
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
import type { Backend, Waiter } from '../pool/index.js'
import { BackendReader, splice, type CloseReason, type SpliceHandle, type SpliceResult } from './splice.js'

export type TcpCloseReason = CloseReason | 'no-backend' | 'connect-failed' | 'backend-full' | 'queue-timeout' | 'proxy-header' | 'proxy-untrusted' | RefusalReason

/** What a connection reports to the service that accepted it. */
export interface ConnectionOwner {
  readonly stats: { noBackend: number; retries: number; connectFailures: number; queued: number; queueTimeouts: number; backendFull: number }
  /** Called once, when both sockets are closed. */
  connectionFinished(connection: TcpConnection, reason: TcpCloseReason, result: SpliceResult | undefined): void
}

/**
 * TLVs of an accepted header that are never forwarded as they are: CRC32C covers the old header
 * only, UNIQUE_ID is ours per hop (the upstream's id is in its own logs), AUTHORITY is re-sent
 * on its own, NOOP is padding.
 */
const NOT_FORWARDED = new Set([PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, PP2_TYPE_AUTHORITY, PP2_TYPE_NOOP])
/**
 * header stage: the PROXY header for a connection, or undefined when the service sends none.
 * Source is the real client (after accept-proxy, the accepted header's), destination the
 * listener's address.
 */
function proxyHeaderOf(config: ServiceConfig, connection: TcpConnection, local: Endpoint | undefined): Buffer | undefined {
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
/** One client connection from accept to close. Holds no closures beyond its bound handlers. */
export class TcpConnection implements Waiter {
  readonly #service: ConnectionOwner
  /** Config, pool and admission as they were when it was accepted, whatever a reload does later. */
  readonly context: FlowContext
  readonly #client: Socket
  /** The socket's peer address as accepted (what admission counted). */
  readonly peer: string
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
  /** The backend whose slot (maxConns) this connection holds, from dial to close. */
  #holding: Backend | undefined
  /** Set while waiting in a backend's queue. */
  #queueTimer: NodeJS.Timeout | undefined

  constructor(service: ConnectionOwner, context: FlowContext, client: Socket, peer: string, ip: string, port: number, local: Endpoint | undefined) {
    this.#service = service
    this.context = context
    this.#client = client
    this.peer = peer
    this.clientIp = ip
    this.clientPort = port
    this.#local = local
    client.on('error', ignore)
  }

  start(): void {
    this.#hash = this.context.key(this.clientIp, this.clientPort)
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
    if (this.#splice !== undefined || this.#finished) return
    if (this.#queueTimer !== undefined) {
      this.#leaveQueue()
      this.#connectNext()
      return
    }
    const upstream = this.#upstream
    if (upstream === undefined) return
    this.#dropUpstream(upstream)
    this.#retryOrFinish(this.backend!)
  }

  abort(reason: CloseReason): void {
    if (this.#splice) {
      this.#splice.abort(reason)
      return
    }
    // Still connecting or queued: stop; the client is closed by #finish.
    this.#aborted = reason
    if (this.#queueTimer !== undefined) this.#leaveQueue()
    if (this.#upstream !== undefined) this.#dropUpstream(this.#upstream)
    this.#finish(reason)
  }

  #connectNext(): void {
    const service = this.#service
    const pool = this.context.pool
    const backend = pool.pick(this.#hash, this.#tried)
    if (!backend) {
      if (this.attempts === 0) service.stats.noBackend++
      this.#finish(this.attempts === 0 ? 'no-backend' : 'connect-failed')
      return
    }
    if (pool.tryTake(backend)) return this.#dial(backend)
    // At its maxConns. A hashing algorithm keeps the client on its backend, so it waits for it;
    // the others try the rest first (primaries only: a full primary is no reason for a backup).
    if (!pool.hashed) {
      const full = new Set(this.#tried)
      full.add(backend.id)
      for (let other = pool.pick(this.#hash, full, false); other !== undefined; other = pool.pick(this.#hash, full, false)) {
        if (pool.tryTake(other)) return this.#dial(other)
        full.add(other.id)
      }
    }
    this.#wait(backend)
  }

  /** Waits in `backend`'s queue up to queueTimeout (HAProxy `timeout queue`). */
  #wait(backend: Backend): void {
    const timeoutMs = this.context.config.queueTimeoutMs
    this.backend = backend
    if (timeoutMs <= 0 || !this.context.pool.enqueue(backend, this)) {
      this.#service.stats.backendFull++
      this.#finish('backend-full')
      return
    }
    this.#service.stats.queued++
    this.#queueTimer = setTimeout(this.#onQueueTimeout, timeoutMs)
  }

  /** A slot of the backend it waited for is now this connection's (Waiter). */
  wake(): void {
    const backend = this.backend!
    clearTimeout(this.#queueTimer)
    this.#queueTimer = undefined
    this.#holding = backend
    if (this.#finished) return this.#giveBack()
    if (!backend.usable) {
      // It left while we waited: its slot is of no use; pick again.
      this.#giveBack()
      this.#connectNext()
      return
    }
    this.#connect(backend)
  }

  readonly #onQueueTimeout = (): void => {
    this.#leaveQueue()
    this.#service.stats.queueTimeouts++
    this.#finish('queue-timeout')
  }

  #leaveQueue(): void {
    clearTimeout(this.#queueTimer)
    this.#queueTimer = undefined
    this.context.pool.dequeue(this.backend!, this)
  }

  /** With a slot of `backend` taken: connect to it. */
  #dial(backend: Backend): void {
    this.#holding = backend
    this.#connect(backend)
  }

  #connect(backend: Backend): void {
    if (this.attempts > 0) this.#service.stats.retries++
    this.attempts++
    this.backend = backend
    const reader = new BackendReader()
    const upstream = net.connect({ host: backend.address, port: backend.port, allowHalfOpen: true, noDelay: true, onread: reader.onread })
    this.#upstream = upstream
    this.#reader = reader
    // Before the connect completes the socket has no activity, so its idle timer is the
    // connect timeout; it is switched off once connected.
    upstream.setTimeout(this.context.config.connectTimeoutMs)
    upstream.once('connect', this.#onConnect)
    upstream.once('timeout', this.#onConnectTimeout)
    upstream.once('error', this.#onConnectError)
  }

  /** Gives the held maxConns slot back (to the next waiter, if any). */
  #giveBack(): void {
    const held = this.#holding
    if (held === undefined) return
    this.#holding = undefined
    this.context.pool.giveBack(held)
  }

  readonly #onConnect = (): void => {
    const upstream = this.#upstream!
    upstream.setTimeout(0)
    upstream.removeListener('timeout', this.#onConnectTimeout)
    upstream.removeListener('error', this.#onConnectError)
    const config = this.context.config
    this.context.pool.connectionOpened(this.backend!)
    // getsockname only when a header needs the destination (wildcard listeners).
    const header = config.proxyProtocol === 'none' ? undefined : proxyHeaderOf(config, this, this.#local ?? localOf(this.#client))
    const rest = this.#rest
    const limits = { idleTimeoutMs: config.idleTimeoutMs }
    if (header === undefined && rest === undefined) {
      this.#splice = splice(this.#client, upstream, this.#reader!, limits, this.#onSpliceDone)
      return
    }
    // Header and the first client bytes in one segment when the client has already spoken; but
    // never wait for it to: with server-speaks-first protocols (MySQL, SMTP) it won't.
    upstream.cork()
    if (header !== undefined) upstream.write(header)
    if (rest !== undefined) upstream.write(rest)
    this.#splice = splice(this.#client, upstream, this.#reader!, limits, this.#onSpliceDone)
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
    this.#service.stats.connectFailures++
    this.context.backendFailed(backend, code)
    this.#retryOrFinish(backend)
  }

  #dropUpstream(upstream: Socket): void {
    upstream.removeListener('connect', this.#onConnect)
    upstream.removeListener('timeout', this.#onConnectTimeout)
    upstream.removeListener('error', this.#onConnectError)
    upstream.on('error', ignore)
    upstream.destroy()
    this.#upstream = undefined
    this.#giveBack()
  }

  /**
   * The client is still paused: nothing it sent has been read, so trying another backend loses
   * no byte. Up to `retries` more attempts; once the primaries this connection may use are all
   * tried, the pool hands out backups (HAProxy's `option redispatch`).
   */
  #retryOrFinish(failed: Backend): void {
    if (this.attempts <= this.context.config.retries) {
      ;(this.#tried ??= new Set()).add(failed.id)
      this.#connectNext()
      return
    }
    this.#finish('connect-failed')
  }

  readonly #onSpliceDone = (result: SpliceResult): void => {
    this.#giveBack()
    this.#service.connectionFinished(this, result.reason, result)
  }

  #finish(reason: TcpCloseReason): void {
    if (this.#finished) return
    this.#finished = true
    this.#giveBack()
    this.#client.destroy()
    this.#service.connectionFinished(this, reason, undefined)
  }
}
export function ignore(): void {}

function uncork(socket: Socket): void {
  socket.uncork()
}
function localOf(socket: Socket): Endpoint | undefined {
  const address = socket.localAddress
  return address === undefined ? undefined : { address, port: socket.localPort ?? 0 }
}
