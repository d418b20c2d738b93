/**
 * A complete PROXY v2 header (framed and checked byte by byte by decode.ts) → ProxyHeader. The
 * walk already vetted version, command, family, transport and length, so this reads the fixed
 * offsets of §2.2 directly; it walks the TLVs and checks CRC32C.
 */
import {
  MAX_AUTHORITY_LENGTH,
  MAX_UNIQUE_ID_LENGTH,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_CRC32C,
  PP2_TYPE_UNIQUE_ID,
  V2_ADDRESS_LENGTH,
  V2_HEADER_LENGTH,
} from './constants.js'
import { CRC32C_INIT, crc32cFinish, crc32cUpdate, crc32cZeros } from './crc32c.js'
import { formatIPv4, formatIPv6 } from './ip.js'
import { type ProxyHeader, type Tlv, proxyError } from './types.js'

export function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`
}

const AF_INET = 1
const AF_INET6 = 2
const TRANSPORTS = ['unspec', 'stream', 'dgram'] as const

/** Decodes a complete v2 header (bytes is exactly 16 + length bytes, already framed and vetted). */
export function decodeV2(bytes: Buffer): ProxyHeader {
  const family = bytes[13]! >> 4
  const tlvs = parseTlvs(bytes, V2_HEADER_LENGTH + V2_ADDRESS_LENGTH[family]!)
  const header: ProxyHeader = {
    version: 2,
    command: (bytes[12]! & 0x0f) === 0 ? 'local' : 'proxy',
    transport: TRANSPORTS[bytes[13]! & 0x0f]!,
    family: 0,
    tlvs,
    byteLength: bytes.length,
  }
  // LOCAL: "discard the protocol block including the family" (§2.2). UNSPEC transport or
  // family, and AF_UNIX, carry nothing an IP load balancer can use: real endpoints apply.
  if (header.command === 'proxy' && header.transport !== 'unspec') {
    const at = V2_HEADER_LENGTH
    if (family === AF_INET) {
      header.family = 4
      header.source = { address: formatIPv4(bytes, at), port: bytes.readUInt16BE(at + 8) }
      header.destination = { address: formatIPv4(bytes, at + 4), port: bytes.readUInt16BE(at + 10) }
    } else if (family === AF_INET6) {
      header.family = 6
      header.source = { address: formatIPv6(bytes, at), port: bytes.readUInt16BE(at + 32) }
      header.destination = { address: formatIPv6(bytes, at + 16), port: bytes.readUInt16BE(at + 34) }
    }
  }
  for (const tlv of tlvs) {
    if (tlv.type === PP2_TYPE_UNIQUE_ID) header.uniqueId = uniqueIdText(tlv.value)
    else if (tlv.type === PP2_TYPE_AUTHORITY) header.authority = tlv.value.toString('utf8')
  }
  return header
}

/**
 * Walks the TLV vectors from `start` to the end of the header (§2.2): each must fit, known types
 * must have possible lengths (CRC32C exactly 4 and at most once, UNIQUE_ID up to 128, AUTHORITY
 * up to 255 as HAProxy enforces), and a CRC32C must match the header with its value read as zeros.
 */
function parseTlvs(bytes: Buffer, start: number): Tlv[] {
  const tlvs: Tlv[] = []
  const end = bytes.length
  let at = start
  let crcAt = -1
  while (at < end) {
    if (at + 3 > end) throw proxyError('v2-bad-tlv', `${end - at} stray bytes after the last TLV`)
    const type = bytes[at]!
    const length = bytes.readUInt16BE(at + 1)
    const valueAt = at + 3
    if (valueAt + length > end)
      throw proxyError('v2-bad-tlv', `TLV ${hex(type)} of ${length} bytes overruns the header`)
    if (type === PP2_TYPE_CRC32C) {
      if (length !== 4) throw proxyError('v2-bad-tlv', `CRC32C TLV of ${length} bytes, not 4`)
      if (crcAt >= 0) throw proxyError('v2-bad-tlv', 'two CRC32C TLVs')
      crcAt = valueAt
    } else if (type === PP2_TYPE_UNIQUE_ID && length > MAX_UNIQUE_ID_LENGTH) {
      throw proxyError('v2-bad-tlv', `UNIQUE_ID of ${length} bytes exceeds ${MAX_UNIQUE_ID_LENGTH}`)
    } else if (type === PP2_TYPE_AUTHORITY && length > MAX_AUTHORITY_LENGTH) {
      throw proxyError('v2-bad-tlv', `AUTHORITY of ${length} bytes exceeds ${MAX_AUTHORITY_LENGTH}`)
    }
    // a copy, so a header kept for the connection's life does not pin the socket's read chunk
    tlvs.push({ type, value: Buffer.from(bytes.subarray(valueAt, valueAt + length)) })
    at = valueAt + length
  }
  if (crcAt >= 0) {
    const expected = bytes.readUInt32BE(crcAt)
    let crc = crc32cUpdate(CRC32C_INIT, bytes, 0, crcAt)
    crc = crc32cZeros(crc, 4)
    const actual = crc32cFinish(crc32cUpdate(crc, bytes, crcAt + 4, end))
    if (actual !== expected) {
      throw proxyError(
        'bad-crc32c',
        `header says 0x${expected.toString(16).padStart(8, '0')}, bytes give 0x${actual.toString(16).padStart(8, '0')}`,
      )
    }
  }
  return tlvs
}

function uniqueIdText(value: Buffer): string {
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!
    if (c < 0x21 || c > 0x7e) return value.toString('hex')
  }
  return value.toString('latin1')
}
