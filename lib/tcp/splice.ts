/**
 * The splice stage (DESIGN: one replaceable function): copies bytes both ways between two
 * connected sockets with backpressure, passes half-close through in each direction, turns a
 * reset on one side into a reset on the other, and ends both on idle. A native splice(2) path
 * can replace this function without touching pick, connect, headers or logs.
 */
import type { Socket } from 'node:net'

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
 * listeners; `client` may be paused (pauseOnConnect) — piping resumes it. Bytes the client sent
 * before this call are still in its socket buffer and are forwarded first.
 */
export function splice(client: Socket, backend: Socket, limits: SpliceLimits, done: (result: SpliceResult) => void): SpliceHandle {
  return new Splice(client, backend, limits, done)
}

class Splice implements SpliceHandle {
  readonly #client: Socket
  readonly #backend: Socket
  readonly #done: (result: SpliceResult) => void
  #reason: CloseReason | undefined
  #open = 2

  constructor(client: Socket, backend: Socket, limits: SpliceLimits, done: (result: SpliceResult) => void) {
    this.#client = client
    this.#backend = backend
    this.#done = done
    // One set of bound handlers per connection; nothing is allocated per chunk.
    client.on('error', this.#onClientError)
    backend.on('error', this.#onBackendError)
    client.once('end', this.#onClientEnd)
    backend.once('end', this.#onBackendEnd)
    client.once('close', this.#onClose)
    backend.once('close', this.#onClose)
    if (limits.idleTimeoutMs > 0) {
      // A socket's timer is reset by reads and by writes, so the client side alone sees activity
      // in both directions (client→backend reads it, backend→client writes it).
      client.setTimeout(limits.idleTimeoutMs)
      client.once('timeout', this.#onIdle)
    }
    client.pipe(backend)
    backend.pipe(client)
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

  readonly #onIdle = (): void => {
    this.abort('idle-timeout')
  }

  readonly #onClose = (): void => {
    // A side that closed without error and without a FIN reaching us (destroyed locally, or the
    // kernel gave up) must not leave its partner open forever.
    if (--this.#open > 0) {
      if (this.#client.destroyed && !this.#backend.destroyed && !this.#client.readableEnded) this.#backend.destroy()
      if (this.#backend.destroyed && !this.#client.destroyed && !this.#backend.readableEnded) this.#client.destroy()
      return
    }
    this.#done({
      bytesFromClient: this.#client.bytesRead,
      bytesFromBackend: this.#backend.bytesRead,
      reason: this.#reason ?? 'client-closed',
    })
  }
}
