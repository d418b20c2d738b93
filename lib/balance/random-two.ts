/**
 * The power of two choices (Mitzenmacher 2001; Envoy's and Finagle's P2C least-request): draw two
 * distinct backends at random, weighted by weight, and keep the one with the lower active/weight.
 * Comparing only two avoids the herd that pure least-conn causes when many l4lb processes see
 * the same stale counts, while still steering clear of a loaded backend almost always.
 *
 * The randomness is xorshift32 (Marsaglia 2003) seeded with a constant, never Math.random, so a
 * picker built from the same set of (name, weight) makes the same draws in every process; that
 * keeps tests and incident replays exact. Entries are kept in name order for the same reason.
 */
import { orderByName, validateEntries } from './entries.js'
import type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'

/** Any non-zero value works; xorshift's only fixed point is 0. */
const PRNG_SEED = 0x2545f491
const TWO_TO_32 = 4_294_967_296

class RandomTwoPicker implements Picker {
  /** Entry indices in name order; the arrays below are indexed by this rank. */
  readonly #order: Int32Array
  readonly #slots: Int32Array
  readonly #weights: Int32Array
  /** ends[rank] = sum of weights of ranks 0..rank: rank r covers [ends[r] - w, ends[r]). */
  readonly #ends: Int32Array
  readonly #totalWeight: number
  readonly #active: Int32Array
  #state = PRNG_SEED

  constructor(entries: readonly BalanceEntry[], active: Int32Array) {
    const count = entries.length
    this.#order = orderByName(entries)
    this.#slots = new Int32Array(count)
    this.#weights = new Int32Array(count)
    this.#ends = new Int32Array(count)
    let total = 0
    for (let rank = 0; rank < count; rank++) {
      const entry = entries[this.#order[rank] ?? 0]
      const weight = entry?.weight ?? 1
      this.#slots[rank] = entry?.slot ?? 0
      this.#weights[rank] = weight
      total += weight
      this.#ends[rank] = total
    }
    this.#totalWeight = total
    this.#active = active
  }

  exportPickData(): PickData {
    return {
      algorithm: 'random-two', order: this.#order, weights: this.#weights, slots: this.#slots, ends: this.#ends,
      totalWeight: this.#totalWeight,
    }
  }

  /** A uniform integer in [0, bound) by multiply-shift; exact while bound < 2^21 (8192 × 256). */
  #below(bound: number): number {
    let x = this.#state
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#state = x
    return Math.floor(((x >>> 0) * bound) / TWO_TO_32)
  }

  /** The rank whose weight interval holds `point`: the first rank with ends[rank] > point. */
  #rankAt(point: number): number {
    const ends = this.#ends
    let low = 0
    let high = ends.length - 1
    while (low < high) {
      const mid = (low + high) >>> 1
      if ((ends[mid] ?? 0) > point) high = mid
      else low = mid + 1
    }
    return low
  }

  /** True when rank a carries strictly less load per unit of weight than rank b. */
  #lighter(a: number, b: number): boolean {
    const activeA = this.#active[this.#slots[a] ?? 0] ?? 0
    const activeB = this.#active[this.#slots[b] ?? 0] ?? 0
    return activeA * (this.#weights[b] ?? 1) < activeB * (this.#weights[a] ?? 1)
  }

  pick(_hash: number, exclude?: ReadonlySet<number> | null): number {
    const count = this.#order.length
    if (exclude && exclude.size > 0) return this.#pickExcluding(exclude)
    if (count <= 1) return count === 1 ? (this.#order[0] ?? -1) : -1
    const first = this.#rankAt(this.#below(this.#totalWeight))
    // The second draw skips the first's interval, so it is distinct and still weight-proportional.
    const firstWeight = this.#weights[first] ?? 0
    const firstStart = (this.#ends[first] ?? 0) - firstWeight
    let point = this.#below(this.#totalWeight - firstWeight)
    if (point >= firstStart) point += firstWeight
    const second = this.#rankAt(point)
    // Ties keep the first draw, which is itself random, so equal backends share evenly.
    return this.#order[this.#lighter(second, first) ? second : first] ?? -1
  }

  /** The same two draws over the non-excluded backends, by linear scan (the rare retry path). */
  #pickExcluding(exclude: ReadonlySet<number>): number {
    const order = this.#order
    const count = order.length
    let total = 0
    let remaining = 0
    let only = -1
    for (let rank = 0; rank < count; rank++) {
      if (exclude.has(order[rank] ?? -1)) continue
      total += this.#weights[rank] ?? 0
      remaining++
      only = rank
    }
    if (remaining === 0) return -1
    if (remaining === 1) return order[only] ?? -1
    const first = this.#scan(this.#below(total), exclude, -1)
    const second = this.#scan(this.#below(total - (this.#weights[first] ?? 0)), exclude, first)
    return order[this.#lighter(second, first) ? second : first] ?? -1
  }

  /** The rank holding `point` when excluded ranks (and `skipRank`) take no room. */
  #scan(point: number, exclude: ReadonlySet<number>, skipRank: number): number {
    const order = this.#order
    let rest = point
    let last = -1
    for (let rank = 0; rank < order.length; rank++) {
      if (rank === skipRank || exclude.has(order[rank] ?? -1)) continue
      const weight = this.#weights[rank] ?? 0
      if (rest < weight) return rank
      rest -= weight
      last = rank
    }
    return last
  }
}

export function createPicker(entries: readonly BalanceEntry[], active: Int32Array): Picker {
  validateEntries('random-two', entries, active)
  return new RandomTwoPicker(entries, active)
}

export const randomTwo: Algorithm = { hashed: false, createPicker }
