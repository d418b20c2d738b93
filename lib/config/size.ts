/** Byte sizes as operators write them (`4MiB`, `512KiB`, `65536`, `4M`), parsed once here. */

const UNIT_BYTES: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
}

/** SO_RCVBUF takes an int; anything near 2 GiB is a typo. */
export const MAX_UDP_BUFFER_BYTES = 1024 ** 3
/** Below one maximal datagram the buffer cannot hold a single 64 KiB datagram. */
export const MIN_UDP_BUFFER_BYTES = 65_536

/**
 * Returns bytes, or a problem string (the caller names the key and value). Units are binary
 * (KiB = 1024) whether or not the `i` is written, as in nginx and sysctl habits.
 */
export function parseSize(text: string): number | string {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$/i.exec(text.trim())
  if (!m) return 'not a size: use bytes or a number with KiB, MiB or GiB (e.g. "4MiB")'
  const unit = UNIT_BYTES[m[2]!.toLowerCase()]
  if (unit === undefined) return `unknown unit "${m[2]}": use B, KiB, MiB or GiB`
  const bytes = Number(m[1]) * unit
  if (!Number.isFinite(bytes) || !Number.isSafeInteger(Math.round(bytes))) return 'too large'
  return Math.round(bytes)
}

export function formatSize(bytes: number): string {
  if (bytes !== 0 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`
  if (bytes !== 0 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`
  if (bytes !== 0 && bytes % 1024 === 0) return `${bytes / 1024}KiB`
  return `${bytes}B`
}
