/**
 * One UDP flow: a client `addr:port` and the connected upstream socket that carries its
 * datagrams to one backend. The kernel matches replies to the flow by the upstream socket's
 * 4-tuple, so a reply needs no lookup; it goes back to the client from the listening socket.
 */
import type { FlowContext } from '../flow/index.js'
import dgram, { type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Backend, Pool } from '../pool/index.js'

export type SessionCloseReason =
  | 'idle-timeout'
  | 'responses'
  | 'backend-down'
  | 'backend-maint'
  | 'backend-error'
  | 'local-error'
  | 'shutdown'

/** What the service does for a session; the session holds only its bound handlers. */
export interface SessionOwner {
  reply(session: UdpSession, msg: Buffer): void
  upstreamError(session: UdpSession, err: NodeJS.ErrnoException): void
}

/**
 * Datagrams a client sends before the upstream socket is connected (one event-loop turn or so)
 * are queued up to this many; past it they are dropped as the network would drop them.
 */
export const MAX_PENDING_DATAGRAMS = 64

export class UdpSession {
  readonly key: string
  /** The address as received (may be `::ffff:a.b.c.d` on a dual-stack socket): replies go there. */
  readonly replyAddress: string
  /** Canonical client IP, for logs. */
  readonly clientIp: string
  readonly clientPort: number
  readonly backend: Backend
  /** Config, pool and admission as they were when the session began. */
  readonly context: FlowContext
  /** The listening socket the client talks to; replies leave from it. */
  readonly listener: Socket
  readonly startedAt: number
  lastActivity: number
  datagramsIn = 0
  datagramsOut = 0
  bytesIn = 0
  bytesOut = 0
  closed = false
  /** PROXY v2 DGRAM header sent before each forwarded datagram (set by the service). */
  proxyHeader: Buffer | undefined
  proxyHeaderOnce = false
  readonly #owner: SessionOwner
  readonly #upstream: Socket
  #pending: Buffer[] | null = []

  constructor(owner: SessionOwner, key: string, replyAddress: string, clientIp: string, clientPort: number, backend: Backend, context: FlowContext, listener: Socket, now: number) {
    this.#owner = owner
    this.key = key
    this.replyAddress = replyAddress
    this.clientIp = clientIp
    this.clientPort = clientPort
    this.backend = backend
    this.context = context
    this.listener = listener
    this.startedAt = now
    this.lastActivity = now
    const upstream = dgram.createSocket({ type: isIPv6(backend.address) ? 'udp6' : 'udp4' })
    this.#upstream = upstream
    upstream.on('message', this.#onMessage)
    upstream.on('error', this.#onError)
    upstream.once('connect', this.#onConnect)
    // Binds an ephemeral port, then connect(2)s: the kernel drops datagrams from anyone else.
    upstream.connect(backend.port, backend.address)
  }

  get pool(): Pool {
    return this.context.pool
  }

  /** Forwards one client datagram (counted by the caller). */
  send(msg: Buffer): void {
    const pending = this.#pending
    if (pending === null) {
      this.#write(msg)
    } else if (pending.length < MAX_PENDING_DATAGRAMS) {
      pending.push(msg)
    }
  }

  /**
   * A PROXY v2 DGRAM header goes in front of the payload as a second iovec (sendmsg gathers
   * them: no copy). Built once per session by the service; dropped after the first datagram
   * when the service sends it only once.
   */
  #write(msg: Buffer): void {
    const header = this.proxyHeader
    if (header === undefined) return void this.#upstream.send(msg)
    if (this.proxyHeaderOnce) this.proxyHeader = undefined
    this.#upstream.send([header, msg])
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.#pending = null
    try {
      this.#upstream.close()
    } catch {
      // Already closed by a failed bind; nothing left to release.
    }
  }

  readonly #onConnect = (): void => {
    const pending = this.#pending
    this.#pending = null
    if (this.closed || pending === null) return
    for (const msg of pending) this.#write(msg)
  }

  readonly #onMessage = (msg: Buffer): void => {
    if (!this.closed) this.#owner.reply(this, msg)
  }

  readonly #onError = (err: NodeJS.ErrnoException): void => {
    if (!this.closed) this.#owner.upstreamError(this, err)
  }
}
