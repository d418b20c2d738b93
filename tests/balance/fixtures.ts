/** Shared test fixtures for the balancer tests: backends, client keys and measurements. */
import { keyHash, type BalanceEntry, type Picker } from '../../lib/balance/index.js'

export const KEY_COUNT = 100_000

/** A deterministic xorshift32 stream, so every run measures the same clients. */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1
  return () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return state >>> 0
  }
}

/** Key hashes of `count` pseudo-random IPv4 clients, as the data path computes them. */
export function clientKeyHashes(count = KEY_COUNT, seed = 0x1234abcd): Uint32Array {
  const next = xorshift32(seed)
  const hashes = new Uint32Array(count)
  for (let i = 0; i < count; i++) {
    const x = next()
    hashes[i] = keyHash(`${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`)
  }
  return hashes
}

/** Backends named like the pool names them: canonical host:port, slot = position. */
export function backends(count: number, weight = 1, base = '10.0.1.'): BalanceEntry[] {
  return Array.from({ length: count }, (_, i) => ({ name: `${base}${i + 1}:5432`, weight, slot: i }))
}

export function weighted(pairs: ReadonlyArray<readonly [string, number]>): BalanceEntry[] {
  return pairs.map(([name, weight], slot) => ({ name, weight, slot }))
}

/** An active-connection array big enough for every slot in `entries`. */
export function activeFor(entries: readonly BalanceEntry[]): Int32Array {
  let size = 0
  for (const entry of entries) size = Math.max(size, entry.slot + 1)
  return new Int32Array(size)
}

/** The same backends in reverse order, slots kept, as a pool with another config order builds. */
export function reversed(entries: readonly BalanceEntry[]): BalanceEntry[] {
  return [...entries].reverse()
}

/**
 * The slot of the backend chosen for each key (-1 for none). Slots are the fixtures' stable
 * identity: they survive reordering and removal, so mappings compare across entry lists.
 */
export function mapKeys(
  picker: Picker,
  entries: readonly BalanceEntry[],
  hashes: Uint32Array,
  exclude?: ReadonlySet<number>,
): Int32Array {
  const slots = new Int32Array(hashes.length)
  for (let i = 0; i < hashes.length; i++) {
    slots[i] = entries[picker.pick(hashes[i] ?? 0, exclude)]?.slot ?? -1
  }
  return slots
}

/** Fraction of keys (or picks) that went to each slot. */
export function sharesBySlot(slots: Int32Array, slotCount: number): number[] {
  const counts = new Array<number>(slotCount).fill(0)
  for (const slot of slots) if (slot >= 0) counts[slot]!++
  return counts.map((count) => count / slots.length)
}

export function movedFraction(before: Int32Array, after: Int32Array): number {
  let moved = 0
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) moved++
  return moved / before.length
}

export function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(2)}%`
}

/** The entries without the one named `name`, slots unchanged. */
export function without(entries: readonly BalanceEntry[], name: string): BalanceEntry[] {
  return entries.filter((entry) => entry.name !== name)
}

/** Every backend of a small set; first, middle and last of a large one (keeps tests fast). */
export function representatives<T>(items: readonly T[]): T[] {
  if (items.length <= 5) return [...items]
  return [items[0]!, items[items.length >> 1]!, items[items.length - 1]!]
}
