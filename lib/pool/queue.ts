/**
 * Backend maxConns (HAProxy's server `maxconn` and its queue): how many connections hold a
 * backend's slot (connecting or open) and the FIFO of those waiting for one.
 */
import type { Backend } from './backend.js'

/** Most connections one backend's queue holds; past it new ones are refused at once. */
export const MAX_QUEUE = 10_000

/** A connection waiting for a slot of a backend at its maxConns (HAProxy's server queue). */
export interface Waiter {
  /** The slot is now this waiter's (already taken for it): connect. */
  wake(): void
}

export class Slots {
  /** Connections holding a backend's slot (connecting or open), by id: what maxConns limits. */
  #taken = new Int32Array(0)
  /** FIFO of connections waiting for a slot, by backend id (created on first use). */
  readonly #queues = new Map<number, Waiter[]>()

  /** Room for backend ids below `length` (the pool's slots are never reused, only added). */
  grow(length: number): void {
    if (this.#taken.length < length) this.#taken = grown(this.#taken, length)
  }

  /** Takes a slot of `backend` for a connection when it has one free (always, without maxConns). */
  tryTake(backend: Backend): boolean {
    if (backend.maxConns > 0 && this.#taken[backend.id]! >= backend.maxConns) return false
    this.#taken[backend.id]!++
    return true
  }

  /**
   * Gives a slot back; the first waiter of the backend's queue gets it (the slot passes to it
   * directly, so a newcomer cannot jump the queue).
   */
  giveBack(backend: Backend): void {
    const queue = this.#queues.get(backend.id)
    const next = queue?.shift()
    if (next !== undefined) {
      if (queue!.length === 0) this.#queues.delete(backend.id)
      next.wake()
      return
    }
    this.#taken[backend.id]!--
  }

  /** Queues a waiter for a slot of `backend`; false when the queue is full. */
  enqueue(backend: Backend, waiter: Waiter): boolean {
    let queue = this.#queues.get(backend.id)
    if (queue === undefined) this.#queues.set(backend.id, (queue = []))
    if (queue.length >= MAX_QUEUE) return false
    queue.push(waiter)
    return true
  }

  /** Takes a waiter out of its queue (it timed out or its client left). */
  dequeue(backend: Backend, waiter: Waiter): void {
    const queue = this.#queues.get(backend.id)
    const at = queue?.indexOf(waiter) ?? -1
    if (at < 0) return
    queue!.splice(at, 1)
    if (queue!.length === 0) this.#queues.delete(backend.id)
  }

  /** Connections waiting for a slot of `backend` now. */
  queued(backend: Backend): number {
    return this.#queues.get(backend.id)?.length ?? 0
  }
}

/** A copy of `array` with room for `length` entries (the new ones 0). */
export function grown(array: Int32Array, length: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(length)
  next.set(array)
  return next
}
