/**
 * Maglev consistent hashing: D. E. Eisenbud et al., "Maglev: A Fast and Reliable Software Network
 * Load Balancer", NSDI 2016, §3.4, Pseudo-code 1 (lookup table population).
 *
 * Each backend owns a permutation of the M table slots, (offset + j * skip) mod M; backends take
 * turns claiming their next free slot until the table is full. With M prime every skip in 1..M-1
 * visits every slot, so each turn ends. Equal backends end up with floor(M/N) or ceil(M/N) slots
 * and removing one moves little more than its own 1/N of keys. This is the `consistent` default.
 *
 * Weights follow Envoy's maglev_lb.cc: in iteration i an entry takes a turn only when
 * i * weight >= target, and each turn adds maxWeight to its target, so the heaviest entry takes
 * a turn every iteration and one of weight maxWeight/3 every third.
 */
import { BalanceError } from '../errors.js'
import { countExcluded, orderByName, validateEntries } from './entries.js'
import { murmur3, SEED_OFFSET, SEED_SKIP } from './hash.js'
import type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'

/** Katran's and Envoy's default: prime, and ~100× a few hundred backends (the paper's M ≫ N). */
export const DEFAULT_TABLE_SIZE = 65_537
/** 2^24 slots is 64 MiB of table; far beyond any need, and keeps every product below 2^53. */
export const MAX_TABLE_SIZE = 16_777_216

export interface MaglevOptions {
  /** A prime no smaller than the number of entries. */
  readonly tableSize?: number
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false
  if (n % 2 === 0) return n === 2
  for (let d = 3; d * d <= n; d += 2) {
    if (n % d === 0) return false
  }
  return true
}

/**
 * The lookup table: slot → index into `entries`. A pure function of the set of (name, weight):
 * entries are sorted by name before they take turns, so input order only changes which index
 * numbers appear, never which backend owns a slot. Throws when `tableSize` is not a prime in
 * [entries.length, MAX_TABLE_SIZE] (a composite size could loop forever, as Envoy's comment warns).
 */
export function buildMaglevTable(
  entries: readonly BalanceEntry[],
  tableSize: number = DEFAULT_TABLE_SIZE,
): Int32Array {
  if (!isPrime(tableSize) || tableSize > MAX_TABLE_SIZE) {
    throw new BalanceError('maglev', `table size ${String(tableSize)} is not a prime up to ${MAX_TABLE_SIZE}`)
  }
  validateEntries('maglev', entries)
  if (tableSize < entries.length) {
    throw new BalanceError('maglev', `table size ${tableSize} is smaller than ${entries.length} backends`)
  }
  const table = new Int32Array(tableSize).fill(-1)
  const count = entries.length
  if (count === 0) return table

  const order = orderByName(entries)
  const weights = new Float64Array(count)
  const skips = new Float64Array(count)
  // Each entry's next permutation position, offset + next · skip mod M, advanced by one add and
  // compare per probe rather than recomputed: no multiply-and-modulo in the inner loop and no
  // product to overflow (next · skip reaches M², which a 32-bit port of this would not hold).
  const positions = new Float64Array(count)
  const targets = new Float64Array(count)
  let maxWeight = 0
  for (let r = 0; r < count; r++) {
    const entry = entries[order[r] ?? 0]
    if (entry === undefined) continue
    weights[r] = entry.weight
    positions[r] = murmur3(entry.name, SEED_OFFSET) % tableSize
    skips[r] = (murmur3(entry.name, SEED_SKIP) % (tableSize - 1)) + 1
    if (entry.weight > maxWeight) maxWeight = entry.weight
  }

  // The heaviest entry takes a turn every iteration, so each iteration fills at least one slot.
  let filled = 0
  for (let iteration = 1; filled < tableSize; iteration++) {
    for (let r = 0; r < count && filled < tableSize; r++) {
      if (iteration * (weights[r] ?? 0) < (targets[r] ?? 0)) continue
      targets[r] = (targets[r] ?? 0) + maxWeight
      const skip = skips[r] ?? 1
      let slot = positions[r] ?? 0
      while (table[slot] !== -1) {
        slot += skip
        if (slot >= tableSize) slot -= tableSize
      }
      table[slot] = order[r] ?? -1
      slot += skip
      positions[r] = slot >= tableSize ? slot - tableSize : slot
      filled++
    }
  }
  return table
}

class MaglevPicker implements Picker {
  readonly #table: Int32Array
  readonly #entryCount: number

  constructor(table: Int32Array, entryCount: number) {
    this.#table = table
    this.#entryCount = entryCount
  }

  exportPickData(): PickData {
    return { algorithm: 'maglev', table: this.#table }
  }

  pick(hash: number, exclude?: ReadonlySet<number> | null): number {
    if (this.#entryCount === 0) return -1
    const size = this.#table.length
    const slot = (hash >>> 0) % size
    const owner = this.#table[slot] ?? -1
    if (!exclude || exclude.size === 0 || !exclude.has(owner)) return owner
    if (countExcluded(exclude, this.#entryCount) >= this.#entryCount) return -1
    // A retry walks on from the key's slot, so the same key and the same exclusions always land
    // on the same fallback, and the fallbacks of an excluded backend's keys spread over the others.
    // Every entry owns at least one slot (all take a turn in iteration 1), so the walk ends.
    for (let step = 1; step < size; step++) {
      const next = slot + step
      const candidate = this.#table[next >= size ? next - size : next] ?? -1
      if (!exclude.has(candidate)) return candidate
    }
    return -1
  }
}

export function createMaglevPicker(
  entries: readonly BalanceEntry[],
  active: Int32Array,
  options: MaglevOptions = {},
): Picker {
  validateEntries('maglev', entries, active)
  return new MaglevPicker(buildMaglevTable(entries, options.tableSize), entries.length)
}

export function createPicker(entries: readonly BalanceEntry[], active: Int32Array): Picker {
  return createMaglevPicker(entries, active)
}

export const maglev: Algorithm = { hashed: true, createPicker }
