/**
 * The splice stage (DESIGN: one replaceable function): copies bytes both ways between two
 * connected sockets with backpressure, passes half-close through in each direction, turns a
 * reset on one side into a reset on the other, and ends both on idle. A native splice(2) path
 * can replace this function without touching pick, connect, headers or logs.
 *
 * Memory is the point of most of what follows (issue 12: 13.9 KB of RSS per idle connection).
 * An idle connection holds its two sockets and one small object, nothing else: no read buffer
 * (backend sockets share one until a flow proves bulk, see BackendReader), no closure (every
 * listener is a module function that finds its Splice through a symbol on the socket), no
 * `once` wrapper and no pipe() (about ten closures and a context per connection).
 *
 * Backend → client bytes are read into buffers of our own (`onread` of net.connect), not into
 * a fresh 64 KiB allocation per read and through the stream machinery; that is most of what a
 * proxy reads (responses, downloads). Client → backend goes through 'data' events: net.Server
 * offers no `onread` for accepted sockets.
 */
import type { OnReadOpts, Socket } from 'node:net'

/**
 * Every backend socket reads into this one buffer until its flow proves bulk. Node hands a
 * socket's read buffer to the kernel and calls us with the bytes before any other socket
 * reads, so one buffer serves all: each chunk is copied out (see copyOut) before the next read.
 */
const SHARED_SIZE = 64 * 1024
const shared = Buffer.allocUnsafeSlow(SHARED_SIZE)
/** A read at least this large means bulk: the connection gets a buffer of its own (no copy per read). */
const BULK_READ = 16 * 1024
const OWN_SIZE = 64 * 1024
/** Buffers of flows that went quiet, for the next bulk flow: at most 4 MiB kept. */
const spare: Buffer[] = []
const MAX_SPARE = 64
/**
 * Small chunks read into `shared` are copied here before they are written: a write the client's
 * socket cannot take at once keeps its chunk, and `shared` is overwritten by the next read of any
 * socket. A chunk written at once gives its bytes back (the common case: no allocation at all).
 */
const SLAB_SIZE = 64 * 1024
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE)
let slabAt = 0

/** The buffer the next read of the socket being served goes into: set by onBackendRead, taken by nextBuffer. */
let handOver: Buffer | undefined

const kSplice = Symbol('l4lb.splice')
const kReader = Symbol('l4lb.reader')
const kEarly = Symbol('l4lb.early')
interface Owned {
  [kSplice]?: Splice
  [kReader]?: BackendReader
  [kEarly]?: Buffer[]
}
type OwnedSocket = Socket & Owned

/**
 * Node calls `buffer()` when the socket's handle is created and right after every `callback`
 * (net.js initSocketHandle, stream_base_commons onStreamRead), without `this`: the callback
 * leaves the answer in `handOver`. One object for every connection.
 */
const ONREAD: OnReadOpts = { buffer: nextBuffer, callback: onBackendRead }

function nextBuffer(): Buffer {
  const buffer = handOver ?? shared
  handOver = undefined
  return buffer
}

function onBackendRead(this: OwnedSocket, n: number, buf: Uint8Array): boolean {
  const reader = this[kReader]
  if (reader === undefined) {
    // Read before splice() attached (never expected: it attaches on connect).
    ;(this[kEarly] ??= []).push(Buffer.from(buf.subarray(0, n)))
    return false
  }
  return reader.read(n, buf as Buffer)
}

function copyOut(n: number): Buffer {
  if (slabAt + n > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE)
    slabAt = 0
  }
  shared.copy(slab, slabAt, 0, n)
  const chunk = slab.subarray(slabAt, slabAt + n)
  slabAt += n
  return chunk
}

function takeOwn(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(OWN_SIZE)
}

/**
 * Reads a backend socket and writes each chunk to the client. Give `onread` to net.connect;
 * hand the reader to splice() once connected.
 *
 * Small reads land in the shared buffer and are copied out (into `slab`) before the write. A
 * read of BULK_READ or more gives the connection a 64 KiB buffer of its own, read into directly
 * from then on; the first small read (the flow went quiet) hands it back. When the client's
 * socket cannot take a write at once, the chunk's buffer belongs to that write (a pending write
 * holds its memory until done) and is never read into again. When the client is slow (write()
 * says so), reading stops until it drains: the kernel's buffers hold the rest and the backend is
 * slowed by TCP, not by our memory.
 */
export class BackendReader {
  readonly onread: OnReadOpts = ONREAD
  #client: Socket | undefined
  /** This connection's buffer while its flow is bulk; undefined = reads go into `shared`. */
  #own: Buffer | undefined

  /** Starts writing to the client; called by splice(). */
  attach(backend: Socket, client: Socket): void {
    this.#client = client
    const owned = backend as OwnedSocket
    owned[kReader] = this
    const early = owned[kEarly]
    if (early === undefined) return
    owned[kEarly] = undefined
    for (const chunk of early) client.write(chunk)
    backend.resume()
  }

  /** Both sockets are closed: no read or write can touch the buffer any more. */
  release(): void {
    const own = this.#own
    this.#own = undefined
    if (own !== undefined && spare.length < MAX_SPARE) spare.push(own)
  }

  /** Holds a buffer of its own (a bulk flow); for tests and stats. */
  get holdsBuffer(): boolean {
    return this.#own !== undefined
  }

  read(n: number, buf: Buffer): boolean {
    const client = this.#client!
    let own = this.#own
    let chunk: Buffer
    let copied = false
    if (buf === shared) {
      if (n >= BULK_READ) {
        own ??= takeOwn()
        shared.copy(own, 0, 0, n)
        chunk = own.subarray(0, n)
      } else {
        chunk = copyOut(n)
        copied = true
      }
    } else {
      chunk = buf.subarray(0, n)
    }
    const flowing = client.write(chunk)
    // writableLength counts a write until its callback: 0 means the kernel took every byte.
    const pending = client.writableLength > 0
    if (copied) {
      if (!pending) slabAt -= n
    } else if (pending) {
      own = undefined // the pending write holds it
    }
    if (n < BULK_READ) {
      if (own !== undefined && spare.length < MAX_SPARE) spare.push(own)
      own = undefined
    } else {
      own ??= takeOwn()
    }
    this.#own = own
    handOver = own
    return flowing
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
 * (pauseOnConnect) — splice resumes it. Bytes the client sent before this call are still in its
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
  readonly #client: OwnedSocket
  readonly #backend: OwnedSocket
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
    this.#client[kSplice] = this
    this.#backend[kSplice] = this
    // Module functions, not closures: nothing is allocated per connection or per chunk for them.
    client.on('error', Splice.#onClientError)
    backend.on('error', Splice.#onBackendError)
    client.on('end', Splice.#onClientEnd)
    backend.on('end', Splice.#onBackendEnd)
    client.on('close', Splice.#onClose)
    backend.on('close', Splice.#onClose)
    client.on('drain', Splice.#onClientDrain)
    backend.on('drain', Splice.#onBackendDrain)
    if (limits.idleTimeoutMs > 0) {
      this.#idle = idleSweepFor(limits.idleTimeoutMs)
      this.#idle.add(this)
    }
    client.on('data', Splice.#onClientData)
    client.resume()
    reader.attach(backend, client)
  }

  abort(reason: CloseReason): void {
    this.#reason ??= reason
    this.#client.destroy()
    this.#backend.destroy()
  }

  static #of(socket: OwnedSocket): Splice {
    return socket[kSplice]!
  }

  static #onClientData(this: OwnedSocket, chunk: Buffer): void {
    const backend = Splice.#of(this).#backend
    // A destroyed backend has closed or is closing: #onClose ends the client.
    if (!backend.destroyed && !backend.write(chunk)) this.pause()
  }

  static #onBackendDrain(this: OwnedSocket): void {
    Splice.#of(this).#client.resume()
  }

  static #onClientDrain(this: OwnedSocket): void {
    Splice.#of(this).#backend.resume()
  }

  static #onClientEnd(this: OwnedSocket): void {
    const splice = Splice.#of(this)
    splice.#reason ??= 'client-closed'
    // every chunk was handed to the backend before EOF was emitted: this FIN follows the last
    splice.#backend.end()
  }

  static #onBackendEnd(this: OwnedSocket): void {
    const splice = Splice.#of(this)
    splice.#reason ??= 'backend-closed'
    // the reader wrote every chunk before EOF was read: this FIN follows the last of them
    splice.#client.end()
  }

  static #onClientError(this: OwnedSocket, err: NodeJS.ErrnoException): void {
    const splice = Splice.#of(this)
    const reset = err.code === 'ECONNRESET'
    splice.#reason ??= reset ? 'client-reset' : 'client-error'
    if (reset) splice.#backend.resetAndDestroy()
    else splice.#backend.destroy()
  }

  static #onBackendError(this: OwnedSocket, err: NodeJS.ErrnoException): void {
    const splice = Splice.#of(this)
    const reset = err.code === 'ECONNRESET'
    splice.#reason ??= reset ? 'backend-reset' : 'backend-error'
    if (reset) splice.#client.resetAndDestroy()
    else splice.#client.destroy()
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

  static #onClose(this: OwnedSocket): void {
    Splice.#of(this).#closed()
  }

  #closed(): void {
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
