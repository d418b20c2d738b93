/**
 * CRC32C (Castagnoli), the checksum of PP2_TYPE_CRC32C (spec §2.2.3, RFC 4960 Appendix B).
 * proxy-protocol-js has no checksum and Node has no built-in CRC32C, so this is the classic
 * byte-at-a-time reflected table (polynomial 0x82F63B78), the same loop as HAProxy's
 * hash_crc32c(). Headers are at most a few hundred bytes, so slicing-by-8 would not pay.
 */
const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/**
 * Continues a CRC over bytes[start, end). Pass the previous return value as `crc` to checksum
 * discontiguous pieces (the receiver checks the header with the checksum field read as zeros
 * without copying it). Start with CRC32C_INIT and finish with crc32cFinish.
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = crc
  for (let i = start; i < end; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return c
}

/** Feeds `count` zero bytes (the checksum field as the spec says to read it). */
export function crc32cZeros(crc: number, count: number): number {
  let c = crc
  for (let i = 0; i < count; i++) c = TABLE[c & 0xff]! ^ (c >>> 8)
  return c
}

export const CRC32C_INIT = 0xffffffff

export function crc32cFinish(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0
}

/** CRC32C of bytes[start, end) as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32cFinish(crc32cUpdate(CRC32C_INIT, bytes, start, end))
}
