/**
 * The open flows of one data path (TCP connections by socket, UDP sessions by client
 * address:port), with the one thing draining needs: a promise for "none left".
 */
export class FlowTable<K, V> {
  readonly #flows = new Map<K, V>()
  #idleListeners: Array<() => void> = []

  get size(): number {
    return this.#flows.size
  }

  get(key: K): V | undefined {
    return this.#flows.get(key)
  }

  set(key: K, flow: V): void {
    this.#flows.set(key, flow)
  }

  values(): IterableIterator<V> {
    return this.#flows.values()
  }

  /** Removes a flow; the last one out resolves every whenIdle(). */
  delete(key: K): void {
    if (!this.#flows.delete(key) || this.#flows.size > 0 || this.#idleListeners.length === 0) return
    const listeners = this.#idleListeners
    this.#idleListeners = []
    for (const l of listeners) l()
  }

  /** Resolves when no flow is left (at once if none). */
  whenIdle(): Promise<void> {
    if (this.#flows.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleListeners.push(resolve))
  }
}
