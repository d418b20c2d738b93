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

/** Backend name chosen for each key (or '' for -1), so mappings compare across entry orders. */
export function mapKeys(
  picker: Picker,
  entries: readonly BalanceEntry[],
  hashes: Uint32Array,
  exclude?: ReadonlySet<number>,
): string[] {
  const names = new Array<string>(hashes.length)
  for (let i = 0; i < hashes.length; i++) {
    names[i] = entries[picker.pick(hashes[i] ?? 0, exclude)]?.name ?? ''
  }
  return names
}

/** Fraction of keys (or picks) each backend name received. */
export function sharesByName(names: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1)
  const shares = new Map<string, number>()
  for (const [name, count] of counts) shares.set(name, count / names.length)
  return shares
}

export function movedFraction(before: readonly string[], after: readonly string[]): number {
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
