/**
 * Consistent hash ring with virtual nodes (Karger et al. 1997; ketama, HAProxy's lb_chash.c).
 * Backend `name` of weight w places points murmur3(`${name}#${i}`, SEED_OFFSET) for
 * i < vnodes(w); a key belongs to the first point clockwise from its hash.
 *
 * Unlike Maglev, a backend's points depend on its own (name, weight) only, so removing a backend
 * moves exactly the keys it owned and nothing else, and adding one back restores every key. The
 * price is memory and a binary search per pick instead of one table read.
 *
 * Point count: POINTS_PER_WEIGHT = 1024 per unit of weight. A backend's share of the circle
 * strays from its weight's share by about sqrt(p(1-p) / points) (p its share): 0.85 points of
 * percentage for one of 3 weight-1 backends, 0.15 for one of 20. Measured over 100k keys
 * (tests/balance/ring.test.ts): 3:2:1 gives 50.0/33.1/16.9 % and removing 1 of N backends moves
 * at most 1/N + 0.9 points of clients, all of them the removed backend's own.
 *
 * The ring is capped at MAX_RING_POINTS = 2^18 points (2 MiB kept, 4 MiB while building) because
 * the pool rebuilds it on the event loop at every health change: a 2^18-point build took 90-210 ms
 * on a busy 2-core test box (mostly hashing the point names), 2^20 four times that. The cap is
 * 256 units of weight (256 weight-1 backends, or one of weight 256). Above it every count is
 * divided by the smallest power of two that fits, keeping at least one point each; since a
 * backend's points are a prefix (i = 0, 1, ...), dividing only drops points and the proportions
 * hold. Only a change that moves the total across such a power of two can move keys between the
 * other backends.
 */
import { BalanceError } from '../errors.js'
import { countExcluded, orderByName, validateEntries } from './entries.js'
import { murmur3, SEED_OFFSET } from './hash.js'
import type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'

export const POINTS_PER_WEIGHT = 1024
export const MAX_RING_POINTS = 2 ** 18

/** Sorting packs point · 2^21 + name rank into one double (< 2^53), so ties go to the lower name. */
const RANK_SCALE = 2 ** 21

export interface Ring {
  /** Ascending point positions on the 32-bit circle. */
  readonly points: Uint32Array
  /** owners[k] is the index into `entries` that owns points[k]. */
  readonly owners: Int32Array
}

/**
 * Virtual nodes per entry (indexed like `entries`), after halving the whole ring as often as
 * MAX_RING_POINTS requires. Precondition: entries passed validateEntries.
 */
export function vnodeCounts(entries: readonly BalanceEntry[]): Int32Array {
  let total = 0
  for (const entry of entries) total += entry.weight * POINTS_PER_WEIGHT
  let divisor = 1
  while (total / divisor > MAX_RING_POINTS) divisor *= 2
  const counts = new Int32Array(entries.length)
  for (let i = 0; i < entries.length; i++) {
    counts[i] = Math.max(1, Math.ceil(((entries[i]?.weight ?? 1) * POINTS_PER_WEIGHT) / divisor))
  }
  return counts
}

export function buildRing(entries: readonly BalanceEntry[]): Ring {
  validateEntries('ring', entries)
  if (entries.length >= RANK_SCALE) throw new BalanceError('ring', `${entries.length} backends is too many`)
  const order = orderByName(entries)
  const counts = vnodeCounts(entries)
  let total = 0
  for (const count of counts) total += count
  const keys = new Float64Array(total)
  let k = 0
  for (let rank = 0; rank < order.length; rank++) {
    const index = order[rank] ?? 0
    const name = entries[index]?.name ?? ''
    const count = counts[index] ?? 0
    for (let i = 0; i < count; i++) keys[k++] = murmur3(`${name}#${i}`, SEED_OFFSET) * RANK_SCALE + rank
  }
  keys.sort()
  const points = new Uint32Array(total)
  const owners = new Int32Array(total)
  for (let p = 0; p < total; p++) {
    const key = keys[p] ?? 0
    const point = Math.floor(key / RANK_SCALE)
    points[p] = point
    owners[p] = order[key - point * RANK_SCALE] ?? -1
  }
  return { points, owners }
}

class RingPicker implements Picker {
  readonly #points: Uint32Array
  readonly #owners: Int32Array
  readonly #entryCount: number

  constructor(ring: Ring, entryCount: number) {
    this.#points = ring.points
    this.#owners = ring.owners
    this.#entryCount = entryCount
  }

  exportPickData(): PickData {
    return { algorithm: 'ring', table: this.#owners, points: this.#points }
  }

  pick(hash: number, exclude?: ReadonlySet<number> | null): number {
    const points = this.#points
    const size = points.length
    if (size === 0) return -1
    const target = hash >>> 0
    // First point >= target; past the last point the circle wraps to point 0.
    let low = 0
    let high = size
    while (low < high) {
      const mid = (low + high) >>> 1
      if ((points[mid] ?? 0) < target) low = mid + 1
      else high = mid
    }
    const start = low === size ? 0 : low
    const owner = this.#owners[start] ?? -1
    if (!exclude || exclude.size === 0 || !exclude.has(owner)) return owner
    if (countExcluded(exclude, this.#entryCount) >= this.#entryCount) return -1
    // Walking clockwise gives each excluded point's keys to whoever owns the next point, the
    // same answer every time, and the same one the ring gives once the backend is removed.
    for (let step = 1; step < size; step++) {
      const next = start + step
      const candidate = this.#owners[next >= size ? next - size : next] ?? -1
      if (!exclude.has(candidate)) return candidate
    }
    return -1
  }
}

export function createPicker(entries: readonly BalanceEntry[], active: Int32Array): Picker {
  validateEntries('ring', entries, active)
  return new RingPicker(buildRing(entries), entries.length)
}

export const ring: Algorithm = { hashed: true, createPicker }
