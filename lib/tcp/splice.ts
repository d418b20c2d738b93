/**
 * The splice stage (DESIGN: one replaceable function): copies bytes both ways between two
 * connected sockets with backpressure, passes half-close through in each direction, turns a
 * reset on one side into a reset on the other, and ends both on idle. A native splice(2) path
 * can replace this function without touching pick, connect, headers or logs.
 *
 * Backend → client bytes are read into buffers of our own (`onread` of net.connect, see
 * BackendReader), not into a fresh 64 KiB allocation per read and through the stream machinery;
 * that is most of what a proxy reads (responses, downloads). Client → backend goes through
 * pipe(): net.Server offers no `onread` for accepted sockets.
 */
import type { OnReadOpts, Socket } from 'node:net'

/** A reader's first buffer: one page-sized chunk of typical request/response traffic. */
const SMALL_BUFFER = 16 * 1024
/** After a read fills the buffer the flow is bulk: read in Node's usual 64 KiB chunks from then on. */
const BULK_BUFFER = 64 * 1024
/**
 * First buffers of finished connections, for the next ones: a new connection then allocates
 * nothing, and V8 sees no external-memory churn (which it answers with full GCs).
 * At most 16 MiB are kept.
 */
const spare: Buffer[] = []
const MAX_SPARE = 1024

/**
 * Reads a backend socket into a buffer it owns and writes each chunk to the client. Give
 * `onread` to net.connect; hand the reader to splice() once connected.
 *
 * A chunk is written from the reader's buffer itself. When the client's socket takes the whole
 * write at once (the common case) the buffer is free again for the next read; when the write is
 * left pending, the buffer belongs to that write and the next read gets a new one. When the
 * client is slow (write() says so), reading stops until it drains: the kernel's buffers hold the
 * rest and the backend is slowed by TCP, not by our memory.
 */
export class BackendReader {
  #buffer: Buffer | undefined
  /** The last chunk was left with a pending write, or filled the buffer: take a new one. */
  #renew = false
  #size = SMALL_BUFFER
  #client: Socket | undefined
  #backend: Socket | undefined
  /** Bytes read before splice() attached the client (never expected: it attaches on connect). */
  #early: Buffer[] | undefined

  readonly onread: OnReadOpts = { buffer: () => this.#nextBuffer(), callback: (n, buf) => this.#onRead(n, buf as Buffer) }

  /** Starts writing to the client; called by splice(). */
  attach(backend: Socket, client: Socket): void {
    this.#backend = backend
    this.#client = client
    const early = this.#early
    if (early === undefined) return
    this.#early = undefined
    for (const chunk of early) client.write(chunk)
    backend.resume()
  }

  /** Both sockets are closed: no read or write can touch the buffer any more. */
  release(): void {
    const buffer = this.#buffer
    this.#buffer = undefined
    if (buffer !== undefined && !this.#renew && buffer.length === SMALL_BUFFER && spare.length < MAX_SPARE) spare.push(buffer)
  }

  #nextBuffer(): Buffer {
    if (this.#buffer === undefined || this.#renew) {
      this.#renew = false
      this.#buffer = (this.#size === SMALL_BUFFER ? spare.pop() : undefined) ?? Buffer.allocUnsafeSlow(this.#size)
    }
    return this.#buffer
  }

  #onRead(n: number, buf: Buffer): boolean {
    const client = this.#client
    if (client === undefined) {
      ;(this.#early ??= []).push(Buffer.from(buf.subarray(0, n)))
      return false
    }
    const flowing = client.write(buf.subarray(0, n))
    if (client.writableLength > 0) this.#renew = true
    if (n === buf.length && this.#size < BULK_BUFFER) {
      this.#size = BULK_BUFFER
      this.#renew = true
    }
    if (flowing) return true
    client.once('drain', this.#onDrain)
    return false
  }

  readonly #onDrain = (): void => {
    this.#backend?.resume()
  }
}

export type CloseReason =
  | 'client-closed'
  | 'backend-closed'
  | 'client-reset'
  | 'backend-reset'
  | 'client-error'
  | 'backend-error'
  | 'idle-timeout'
  | 'shutdown'
  | 'backend-down'

export interface SpliceLimits {
  /** 0 = no idle timeout. Activity in either direction resets it. */
  readonly idleTimeoutMs: number
}

export interface SpliceResult {
  readonly bytesFromClient: number
  readonly bytesFromBackend: number
  readonly reason: CloseReason
}

export interface SpliceHandle {
  /** Ends both sides now (drain timeout, on-down shutdown); the result reports `reason`. */
  abort(reason: CloseReason): void
}

/**
 * Preconditions: both sockets are connected, created with allowHalfOpen, and have no 'data'
 * listeners; `backend` was created with `onread: reader.onread`; `client` may be paused
 * (pauseOnConnect) — piping resumes it. Bytes the client sent before this call are still in its
 * socket buffer and are forwarded first.
 */
export function splice(
  client: Socket,
  backend: Socket,
  reader: BackendReader,
  limits: SpliceLimits,
  done: (result: SpliceResult) => void,
): SpliceHandle {
  return new Splice(client, backend, reader, limits, done)
}

class Splice implements SpliceHandle {
  readonly #client: Socket
  readonly #backend: Socket
  readonly #reader: BackendReader
  readonly #done: (result: SpliceResult) => void
  #reason: CloseReason | undefined
  #open = 2
  #idle: IdleSweep | undefined
  /** Bytes read on both sides at the idle sweep's last look, and when they last changed. */
  #seen = 0
  #activeAt = Date.now()

  constructor(client: Socket, backend: Socket, reader: BackendReader, limits: SpliceLimits, done: (result: SpliceResult) => void) {
    this.#client = client
    this.#backend = backend
    this.#reader = reader
    this.#done = done
    // One set of bound handlers per connection; nothing is allocated per chunk.
    client.on('error', this.#onClientError)
    backend.on('error', this.#onBackendError)
    client.once('end', this.#onClientEnd)
    backend.once('end', this.#onBackendEnd)
    client.once('close', this.#onClose)
    backend.once('close', this.#onClose)
    if (limits.idleTimeoutMs > 0) {
      this.#idle = idleSweepFor(limits.idleTimeoutMs)
      this.#idle.add(this)
    }
    client.pipe(backend)
    reader.attach(backend, client)
  }

  abort(reason: CloseReason): void {
    this.#reason ??= reason
    this.#client.destroy()
    this.#backend.destroy()
  }

  readonly #onClientEnd = (): void => {
    this.#reason ??= 'client-closed'
  }

  readonly #onBackendEnd = (): void => {
    this.#reason ??= 'backend-closed'
    // the reader wrote every chunk before EOF was read: this FIN follows the last of them
    this.#client.end()
  }

  readonly #onClientError = (err: NodeJS.ErrnoException): void => {
    const reset = err.code === 'ECONNRESET'
    this.#reason ??= reset ? 'client-reset' : 'client-error'
    if (reset) this.#backend.resetAndDestroy()
    else this.#backend.destroy()
  }

  readonly #onBackendError = (err: NodeJS.ErrnoException): void => {
    const reset = err.code === 'ECONNRESET'
    this.#reason ??= reset ? 'backend-reset' : 'backend-error'
    if (reset) this.#client.resetAndDestroy()
    else this.#client.destroy()
  }

  /** Called by the idle sweep: bytes read on either side since the last look are activity. */
  checkIdle(now: number, timeoutMs: number): void {
    const seen = this.#client.bytesRead + this.#backend.bytesRead
    if (seen !== this.#seen) {
      this.#seen = seen
      this.#activeAt = now
    } else if (now - this.#activeAt >= timeoutMs) {
      this.abort('idle-timeout')
    }
  }

  readonly #onClose = (): void => {
    // A side that closed without error and without a FIN reaching us (destroyed locally, or the
    // kernel gave up) must not leave its partner open forever.
    if (--this.#open > 0) {
      if (this.#client.destroyed && !this.#backend.destroyed && !this.#client.readableEnded) this.#backend.destroy()
      if (this.#backend.destroyed && !this.#client.destroyed && !this.#backend.readableEnded) this.#client.destroy()
      return
    }
    this.#reader.release()
    this.#idle?.delete(this)
    this.#done({
      bytesFromClient: this.#client.bytesRead,
      bytesFromBackend: this.#backend.bytesRead,
      reason: this.#reason ?? 'client-closed',
    })
  }
}

/**
 * Idle timeouts without a timer per connection and without work per chunk: one interval per
 * timeout value looks at every connection's byte counters and ends those that have not moved
 * for the whole timeout. A connection closes between `timeoutMs` and `timeoutMs` plus one
 * interval (an eighth of the timeout, 25 ms to 5 s) after its last byte.
 */
class IdleSweep {
  readonly #timeoutMs: number
  readonly #members = new Set<Splice>()
  #timer: NodeJS.Timeout | undefined

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  add(splice: Splice): void {
    this.#members.add(splice)
    if (this.#timer !== undefined) return
    const interval = Math.min(5000, Math.max(25, Math.floor(this.#timeoutMs / 8)))
    this.#timer = setInterval(this.#sweep, interval)
    this.#timer.unref()
  }

  delete(splice: Splice): void {
    this.#members.delete(splice)
    if (this.#members.size > 0 || this.#timer === undefined) return
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  readonly #sweep = (): void => {
    const now = Date.now()
    for (const splice of this.#members) splice.checkIdle(now, this.#timeoutMs)
  }
}

const idleSweeps = new Map<number, IdleSweep>()

function idleSweepFor(timeoutMs: number): IdleSweep {
  let sweep = idleSweeps.get(timeoutMs)
  if (sweep === undefined) idleSweeps.set(timeoutMs, (sweep = new IdleSweep(timeoutMs)))
  return sweep
}
