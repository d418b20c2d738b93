/**
 * The one hash every balancer and every l4lb process uses: MurmurHash3 x86_32 (Austin Appleby,
 * public domain) over the bytes of an ASCII string. It is fixed here, never seeded at random,
 * so two l4lb instances behind ECMP or keepalived map every key to the same backend.
 *
 * Keys are canonical textual addresses (`10.0.0.1`, `2001:db8::1`, with `:port` appended for the
 * src-ip-port key) and backend names are canonical `host:port`, so they are ASCII and one UTF-16
 * code unit is one byte. Non-ASCII input is hashed by its low byte per code unit; that never
 * happens for addresses, and it keeps the hot path free of an encoder.
 */

/** Seeds for the independent hashes the algorithms need. Changing one remaps every key. */
export const SEED_KEY = 0
export const SEED_OFFSET = 0x9747b28c
export const SEED_SKIP = 0x5bd1e995

export function murmur3(text: string, seed = 0): number {
  let h = seed >>> 0
  const length = text.length
  const blocks = length & ~3
  let i = 0
  while (i < blocks) {
    let k =
      (text.charCodeAt(i) & 0xff) |
      ((text.charCodeAt(i + 1) & 0xff) << 8) |
      ((text.charCodeAt(i + 2) & 0xff) << 16) |
      ((text.charCodeAt(i + 3) & 0xff) << 24)
    k = Math.imul(k, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, 0x1b873593)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
    i += 4
  }
  const tail = length & 3
  if (tail !== 0) {
    let k = 0
    if (tail === 3) k ^= (text.charCodeAt(i + 2) & 0xff) << 16
    if (tail >= 2) k ^= (text.charCodeAt(i + 1) & 0xff) << 8
    k ^= text.charCodeAt(i) & 0xff
    k = Math.imul(k, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, 0x1b873593)
    h ^= k
  }
  h ^= length
  return fmix32(h)
}

/** Murmur3's finalizer: a cheap, well-mixed 32-bit permutation, also used to derive hashes. */
export function fmix32(value: number): number {
  let h = value
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** The connection key's hash, computed once per connection from the client address. */
export function keyHash(key: string): number {
  return murmur3(key, SEED_KEY)
}
