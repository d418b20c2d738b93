/**
 * Least connections, weighted: the backend with the smallest active/weight wins (HAProxy's
 * `leastconn`, nginx's `least_conn`). Loads are compared by cross-multiplication,
 * activeA · weightB < activeB · weightA, which is exact in doubles (≤ 2^31 · 256), so 2/2 and
 * 1/1 tie exactly instead of by a float rounding.
 *
 * Ties are common (every idle backend has load 0), and always taking the first would send every
 * new connection of a burst to one backend before the pool's counter moves. So the scan starts
 * at a cursor just past the last winner and only a strictly lower load displaces the first
 * tied candidate: equal backends take turns, as HAProxy falls back to round-robin among equals.
 */
import { orderByName, validateEntries } from './entries.js'
import type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'

class LeastConnPicker implements Picker {
  /** Entry indices in name order, so the rotation among equals is the same on every instance. */
  readonly #order: Int32Array
  readonly #slots: Int32Array
  readonly #weights: Int32Array
  readonly #active: Int32Array
  #cursor = 0

  constructor(entries: readonly BalanceEntry[], active: Int32Array) {
    this.#order = orderByName(entries)
    this.#slots = new Int32Array(entries.length)
    this.#weights = new Int32Array(entries.length)
    for (let rank = 0; rank < this.#order.length; rank++) {
      const entry = entries[this.#order[rank] ?? 0]
      this.#slots[rank] = entry?.slot ?? 0
      this.#weights[rank] = entry?.weight ?? 1
    }
    this.#active = active
  }

  exportPickData(): PickData {
    return { algorithm: 'least-conn', order: this.#order, weights: this.#weights, slots: this.#slots }
  }

  pick(_hash: number, exclude?: ReadonlySet<number> | null): number {
    const order = this.#order
    const count = order.length
    if (count === 0) return -1
    const checkExclude = exclude != null && exclude.size > 0
    let best = -1
    let bestActive = 0
    let bestWeight = 1
    for (let step = 0; step < count; step++) {
      let rank = this.#cursor + step
      if (rank >= count) rank -= count
      if (checkExclude && exclude.has(order[rank] ?? -1)) continue
      const active = this.#active[this.#slots[rank] ?? 0] ?? 0
      const weight = this.#weights[rank] ?? 1
      if (best < 0 || active * bestWeight < bestActive * weight) {
        best = rank
        bestActive = active
        bestWeight = weight
      }
    }
    if (best < 0) return -1
    this.#cursor = best + 1 === count ? 0 : best + 1
    return order[best] ?? -1
  }
}

export function createPicker(entries: readonly BalanceEntry[], active: Int32Array): Picker {
  validateEntries('least-conn', entries, active)
  return new LeastConnPicker(entries, active)
}

export const leastConn: Algorithm = { hashed: false, createPicker }
