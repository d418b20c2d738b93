/**
 * Plain modulo hashing, like nginx's `ip_hash` or `hash $remote_addr` without `consistent`: a key
 * owns slots[hash mod slots.length], where each backend appears weight/gcd times (in name order).
 *
 * This is deliberately NOT consistent: adding or removing one backend changes the modulus, so
 * most keys move (about (N-1)/N of them), not just the removed backend's share. Operators choose
 * it for its simplicity and a perfectly even weighted split; choose `consistent` (Maglev) or
 * `ring` when keys should stay put across backend changes.
 */
import { countExcluded, greatestCommonDivisor, orderByName, validateEntries } from './entries.js'
import { fmix32 } from './hash.js'
import type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'

/**
 * Rehash attempts before the linear scan. Each attempt lands on an excluded backend with odds
 * (excluded share), so with one of two backends excluded 8 misses happen once in 256 retries.
 */
const MAX_REHASH_ATTEMPTS = 8

/** The weighted slot array: entry indices, each repeated weight/gcd times, in name order. */
export function buildSlots(entries: readonly BalanceEntry[]): Int32Array {
  validateEntries('ip-hash', entries)
  let divisor = 0
  for (const entry of entries) divisor = greatestCommonDivisor(entry.weight, divisor)
  let total = 0
  for (const entry of entries) total += entry.weight / divisor
  const slots = new Int32Array(total)
  let s = 0
  for (const index of orderByName(entries)) {
    const repeats = (entries[index]?.weight ?? 0) / divisor
    for (let i = 0; i < repeats; i++) slots[s++] = index
  }
  return slots
}

class IpHashPicker implements Picker {
  readonly #slots: Int32Array
  readonly #entryCount: number

  constructor(slots: Int32Array, entryCount: number) {
    this.#slots = slots
    this.#entryCount = entryCount
  }

  exportPickData(): PickData {
    return { algorithm: 'ip-hash', table: this.#slots }
  }

  pick(hash: number, exclude?: ReadonlySet<number> | null): number {
    const slots = this.#slots
    const size = slots.length
    if (size === 0) return -1
    const key = hash >>> 0
    const home = key % size
    const owner = slots[home] ?? -1
    if (!exclude || exclude.size === 0 || !exclude.has(owner)) return owner
    if (countExcluded(exclude, this.#entryCount) >= this.#entryCount) return -1
    // Rehashing (not stepping to the neighbour slot) spreads an excluded backend's keys over all
    // the others in proportion to weight, as nginx's ip_hash does on a failed peer; it depends
    // only on the key, so a retry for the same key lands on the same fallback.
    for (let attempt = 1; attempt <= MAX_REHASH_ATTEMPTS; attempt++) {
      const candidate = slots[fmix32((key + attempt) >>> 0) % size] ?? -1
      if (!exclude.has(candidate)) return candidate
    }
    for (let step = 1; step < size; step++) {
      const next = home + step
      const candidate = slots[next >= size ? next - size : next] ?? -1
      if (!exclude.has(candidate)) return candidate
    }
    return -1
  }
}

export function createPicker(entries: readonly BalanceEntry[], active: Int32Array): Picker {
  validateEntries('ip-hash', entries, active)
  return new IpHashPicker(buildSlots(entries), entries.length)
}

export const ipHash: Algorithm = { hashed: true, createPicker }
