/**
 * nginx's smooth weighted round-robin (ngx_http_upstream_get_peer, 2012): every pick adds each
 * backend's weight to its `current`, takes the largest, and subtracts the total weight from the
 * winner. Over any total-weight picks each backend is chosen exactly `weight` times, and the
 * heavy ones are interleaved (3:2:1 gives a,b,a,c,b,a) rather than sent in bursts.
 *
 * State lives in the picker; a rebuilt picker takes over the `current` of every backend that is
 * still there (by name), as grpc-js's round-robin keeps its position across pickers, so a
 * rebuild (a health change, each slow-start step) neither restarts the sequence nor hands the
 * first backend an extra turn. Backends are visited in name order and ties go to the lower
 * name, so from a fresh start the sequence depends only on the set of (name, weight).
 */
import { orderByName, validateEntries } from './entries.js'
import type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'

class RoundRobinPicker implements Picker {
  /** Entry indices in name order; every other array is indexed by this rank. */
  #order: Int32Array
  #names: readonly string[]
  #weights: Int32Array
  /** |current| stays below the total weight (≤ 256 · N), well inside an Int32. */
  #current: Int32Array
  #totalWeight: number

  constructor(entries: readonly BalanceEntry[], previous: RoundRobinPicker | undefined) {
    this.#order = orderByName(entries)
    this.#names = Array.from(this.#order, (index) => entries[index]?.name ?? '')
    this.#weights = new Int32Array(entries.length)
    this.#current = new Int32Array(entries.length)
    let total = 0
    for (let rank = 0; rank < this.#order.length; rank++) {
      const weight = entries[this.#order[rank] ?? 0]?.weight ?? 0
      this.#weights[rank] = weight
      total += weight
    }
    this.#totalWeight = total
    if (previous) this.#carry(previous)
  }

  /**
   * Takes over the smooth-WRR `current` of backends that stay. Each is clamped to what the new
   * total allows (|current| < total), so a weight change or a removal can skew a few picks,
   * never the proportions.
   */
  #carry(previous: RoundRobinPicker): void {
    const before = new Map<string, number>()
    previous.#names.forEach((name, rank) => before.set(name, previous.#current[rank] ?? 0))
    const limit = this.#totalWeight
    this.#names.forEach((name, rank) => {
      const value = before.get(name)
      if (value !== undefined) this.#current[rank] = Math.max(-limit, Math.min(limit, value))
    })
  }

  /**
   * One period of the sequence a fresh picker makes: after total-weight picks every `current` is
   * back to 0 (each entry won exactly `weight` times), so the sequence repeats exactly and a
   * plane can step through it with one shared position.
   */
  exportPickData(): PickData {
    const fresh = new RoundRobinPicker([], undefined)
    fresh.#order = this.#order
    fresh.#names = this.#names
    fresh.#weights = this.#weights
    fresh.#current = new Int32Array(this.#order.length)
    fresh.#totalWeight = this.#totalWeight
    const table = new Int32Array(this.#totalWeight)
    for (let i = 0; i < table.length; i++) table[i] = fresh.pick(0)
    return { algorithm: 'round-robin', table }
  }

  pick(_hash: number, exclude?: ReadonlySet<number> | null): number {
    const order = this.#order
    const weights = this.#weights
    const current = this.#current
    const count = order.length
    let best = -1
    let bestCurrent = 0
    let total = this.#totalWeight
    if (!exclude || exclude.size === 0) {
      for (let rank = 0; rank < count; rank++) {
        const value = (current[rank] ?? 0) + (weights[rank] ?? 0)
        current[rank] = value
        if (best < 0 || value > bestCurrent) {
          best = rank
          bestCurrent = value
        }
      }
    } else {
      // As nginx does for peers already tried: an excluded backend neither gains weight nor
      // counts in the total, so the others keep their smooth proportions among themselves.
      total = 0
      for (let rank = 0; rank < count; rank++) {
        if (exclude.has(order[rank] ?? -1)) continue
        const weight = weights[rank] ?? 0
        const value = (current[rank] ?? 0) + weight
        current[rank] = value
        total += weight
        if (best < 0 || value > bestCurrent) {
          best = rank
          bestCurrent = value
        }
      }
    }
    if (best < 0) return -1
    current[best] = bestCurrent - total
    return order[best] ?? -1
  }
}

export function createPicker(entries: readonly BalanceEntry[], active: Int32Array, previous?: Picker): Picker {
  validateEntries('round-robin', entries, active)
  return new RoundRobinPicker(entries, previous instanceof RoundRobinPicker ? previous : undefined)
}

export const roundRobin: Algorithm = { hashed: false, createPicker }
