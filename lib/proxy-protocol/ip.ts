/**
 * Address text <-> bytes for the PROXY hot path. proxy-protocol-js takes and returns addresses
 * as byte tuples and leaves the text to us; `ip-address` does it but costs ~5 µs a call and prints
 * IPv4-mapped addresses as `::ffff:102:304`, which would not match what Node puts in
 * `socket.remoteAddress`. So these small scanners: strict input (no leading zeros in IPv4, at most
 * one `::`, 1-4 hex digits per group), and output rules copied from libuv's inet_ntop6, which is
 * what Node itself prints. lib/address may take them over.
 */

const DOT = 0x2e
const COLON = 0x3a

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  return -1
}

/** Strict dotted quad (the PROXY v1 rule: four decimals 0-255, no leading zeros). */
export function parseIPv4Into(text: string, out: Uint8Array, offset: number, from = 0): boolean {
  const n = text.length
  let i = from
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= n || text.charCodeAt(i) !== DOT) return false
      i++
    }
    const start = i
    let value = 0
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c < 0x30 || c > 0x39) break
      value = value * 10 + (c - 0x30)
      i++
      if (i - start > 3) return false
    }
    if (i === start || value > 255) return false
    if (i - start > 1 && text.charCodeAt(start) === 0x30) return false
    out[offset + part] = value
  }
  return i === n
}

/**
 * IPv6 text (RFC 4291 §2.2, including a trailing dotted quad, no zone) into out[offset..+16).
 * Returns false for anything else.
 */
export function parseIPv6Into(text: string, out: Uint8Array, offset: number): boolean {
  const n = text.length
  if (n < 2 || n > 45) return false
  let words = 0
  let gap = -1
  let i = 0
  if (text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return false
    gap = 0
    i = 2
  }
  while (i < n) {
    if (words === 8) return false
    let value = 0
    let j = i
    while (j < n) {
      const h = hexValue(text.charCodeAt(j))
      if (h < 0) break
      value = value * 16 + h
      j++
      if (j - i > 4) return false
    }
    if (j < n && text.charCodeAt(j) === DOT) {
      // an embedded IPv4 address ends the text and fills the last two words
      if (words > 6 || !parseIPv4Into(text, out, offset + words * 2, i)) return false
      words += 2
      break
    }
    if (j === i) return false
    out[offset + words * 2] = value >> 8
    out[offset + words * 2 + 1] = value & 0xff
    words++
    if (j === n) break
    if (text.charCodeAt(j) !== COLON) return false
    j++
    if (j < n && text.charCodeAt(j) === COLON) {
      if (gap >= 0) return false
      gap = words
      j++
    } else if (j === n) {
      return false
    }
    i = j
  }
  if (gap < 0) return words === 8
  if (words === 8) return false
  // move the words written after `::` to the end, and zero the gap
  const tail = words - gap
  const shift = (8 - words) * 2
  for (let k = (gap + tail) * 2 - 1; k >= gap * 2; k--) out[offset + k + shift] = out[offset + k]!
  out.fill(0, offset + gap * 2, offset + gap * 2 + shift)
  return true
}

export function formatIPv4(bytes: ArrayLike<number>, offset = 0): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`
}

/**
 * RFC 5952 text of 16 bytes, as libuv's inet_ntop6 (and so Node) prints it: lower-case, the
 * first longest run of two or more zero words compressed, and IPv4-mapped / IPv4-compatible
 * addresses ending in a dotted quad unless `dotted` is false (PROXY v1 lines want hex only).
 */
export function formatIPv6(bytes: ArrayLike<number>, offset = 0, dotted = true): string {
  let bestBase = -1
  let bestLength = 0
  let runBase = -1
  for (let w = 0; w <= 8; w++) {
    const zero = w < 8 && bytes[offset + w * 2] === 0 && bytes[offset + w * 2 + 1] === 0
    if (zero) {
      if (runBase < 0) runBase = w
    } else if (runBase >= 0) {
      if (w - runBase > bestLength) {
        bestBase = runBase
        bestLength = w - runBase
      }
      runBase = -1
    }
  }
  if (bestLength < 2) bestBase = -1
  const word = (w: number): number => (bytes[offset + w * 2]! << 8) | bytes[offset + w * 2 + 1]!
  // libuv also lists a run of 7 here, but that branch can never fire there (word 6 is inside
  // the run), so `::0.0.0.2` prints as `::2`; we match what Node prints, not what it meant.
  if (dotted && bestBase === 0 && (bestLength === 6 || (bestLength === 5 && word(5) === 0xffff))) {
    return (bestLength === 5 ? '::ffff:' : '::') + formatIPv4(bytes, offset + 12)
  }
  let text = ''
  for (let w = 0; w < 8; w++) {
    if (w === bestBase) {
      text += '::'
      w += bestLength - 1
      continue
    }
    if (w > 0 && w !== bestBase + bestLength) text += ':'
    text += word(w).toString(16)
  }
  return text
}

/**
 * Wire bytes of a Node address string: 4 bytes for IPv4 and for IPv4-mapped IPv6 (what a
 * dual-stack listener reports for an IPv4 client), 16 for other IPv6; undefined if the text is
 * neither. A `%zone` suffix is dropped: no PROXY format can carry it.
 */
export function addressBytes(text: string): Uint8Array | undefined {
  const v4 = new Uint8Array(4)
  if (parseIPv4Into(text, v4, 0)) return v4
  const zone = text.indexOf('%')
  const v6 = new Uint8Array(16)
  if (!parseIPv6Into(zone < 0 ? text : text.slice(0, zone), v6, 0)) return undefined
  if (isV4Mapped(v6)) return v6.subarray(12)
  return v6
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false
  return b[10] === 0xff && b[11] === 0xff
}

/** ::ffff:a.b.c.d for 4 bytes, the bytes themselves for 16. */
export function toIPv6Bytes(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes
  const out = new Uint8Array(16)
  out[10] = 0xff
  out[11] = 0xff
  out.set(bytes, 12)
  return out
}
