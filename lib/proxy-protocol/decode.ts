import { ProxyHeaderError } from '../errors.js'
import {
  AddressFamilyType,
  Command,
  IPv4ProxyAddress,
  IPv6ProxyAddress,
  TransportProtocol,
  V1ProxyProtocol,
  V2ProxyProtocol,
  type V2Parsed,
} from './codec.js'
import {
  DEFAULT_MAX_V2_LENGTH,
  MAX_AUTHORITY_LENGTH,
  MAX_UNIQUE_ID_LENGTH,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_CRC32C,
  PP2_TYPE_UNIQUE_ID,
  V1_MAX_LENGTH,
  V1_TCP4_MAX_LENGTH,
  V2_ADDRESS_LENGTH,
  V2_HEADER_LENGTH,
  V2_SIGNATURE,
} from './constants.js'
import { CRC32C_INIT, crc32cFinish, crc32cUpdate, crc32cZeros } from './crc32c.js'
import { formatIPv4, formatIPv6, parseIPv4Into, parseIPv6Into } from './ip.js'
import { type Endpoint, type ProxyHeader, type Tlv, proxyError } from './types.js'

export interface ParserOptions {
  /** Refuse v2 headers whose length field exceeds this many bytes (default 4096). */
  maxV2Length?: number
}

export type ParseResult =
  | { state: 'need-more' }
  | {
      state: 'done'
      header: ProxyHeader
      /** Bytes after the header in the last chunk, exactly as received (a view, not a copy). */
      rest: Buffer
    }

const NEED_MORE: ParseResult = Object.freeze({ state: 'need-more' })

const KIND_UNKNOWN = 0
const KIND_V1 = 1
const KIND_V2 = 2

const CR = 0x0d
const LF = 0x0a
const SPACE = 0x20

const V1_PREFIX = Buffer.from('PROXY ', 'latin1')
// The protocol token and what must follow it: TCP4/TCP6 a space, UNKNOWN a space or the CRLF
// (checked separately, since the spec lets UNKNOWN stand alone).
const V1_TOKENS = [
  Buffer.from('TCP4 ', 'latin1'),
  Buffer.from('TCP6 ', 'latin1'),
  Buffer.from('UNKNOWN', 'latin1'),
]
const TCP4 = 0
const UNKNOWN = 2
const UNKNOWN_END = 6 + 7 // position of the byte after "PROXY UNKNOWN"

// Byte classes allowed inside TCP4/TCP6 address and port fields, so a line goes wrong at the
// first byte that could not belong to one rather than at the CRLF.
const DIGIT = 1
const HEX = 2
const DOTC = 4
const COLONC = 8
const CLASS = new Uint8Array(256)
for (let c = 0x30; c <= 0x39; c++) CLASS[c] = DIGIT | HEX
for (let c = 0x61; c <= 0x66; c++) CLASS[c] = HEX
for (let c = 0x41; c <= 0x46; c++) CLASS[c] = HEX
CLASS[0x2e] = DOTC
CLASS[0x3a] = COLONC

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`
}

/**
 * An incremental PROXY v1/v2 header reader: feed it the chunks a socket delivers, in order, until
 * it answers `done` (with the bytes that followed the header) or throws a ProxyHeaderError. It
 * follows doc/proxy-protocol.txt: it refuses at the first byte that cannot continue a valid
 * header (signature, version, command, family, v1 token, byte classes, lengths), and waits only
 * while the bytes so far could still be one.
 *
 * Framing and those early checks are ours: proxy-protocol-js parses complete input only, does
 * not say how long a v2 header is (it hands back everything after the addresses as `data`) and
 * does not bound a v1 line. Once a header is complete, proxy-protocol-js decodes it (v1 fields,
 * v2 fixed header and addresses); we then validate v1 fields strictly, walk the v2 TLVs and check
 * CRC32C, which the package does not do.
 *
 * A header that arrives in one chunk (the normal case, §2: it is sent at once) is decoded in
 * place without copying; only a split header is gathered into a buffer sized to it.
 */
export class ProxyHeaderParser {
  readonly #maxV2Length: number
  #pos = 0
  #kind = KIND_UNKNOWN
  #stored: Buffer | null = null
  #storedLength = 0
  #v1Candidates = 0b111
  #v1Proto = -1
  #v1Cap = V1_MAX_LENGTH
  #prevCR = false
  #prevSpace = false
  #spaces = 0
  #fieldLength = 0
  #fieldFirst = 0
  #v2Family = 0
  #v2Total = 0
  #failure: ProxyHeaderError | null = null
  #finished = false

  constructor(options: ParserOptions = {}) {
    const max = options.maxV2Length ?? DEFAULT_MAX_V2_LENGTH
    if (!Number.isInteger(max) || max < 0 || max > 0xffff) {
      throw new RangeError(`maxV2Length must be an integer 0-65535, got ${max}`)
    }
    this.#maxV2Length = max
  }

  /** Header bytes consumed so far. */
  get bytesSeen(): number {
    return this.#pos
  }

  /**
   * Feeds the next chunk. Throws the ProxyHeaderError that refuses the header (and again on any
   * later call); calling after `done` is a programming error. `rest` is a view of `chunk`.
   */
  push(chunk: Buffer): ParseResult {
    if (this.#failure !== null) throw this.#failure
    if (this.#finished) throw new Error('ProxyHeaderParser.push after the header was complete')
    try {
      return this.#push(chunk)
    } catch (err) {
      this.#stored = null
      // anything but a ProxyHeaderError is a bug here, and is left loud rather than relabelled
      if (err instanceof ProxyHeaderError) this.#failure = err
      throw err
    }
  }

  #push(chunk: Buffer): ParseResult {
    const n = chunk.length
    let i = 0
    let end = -1
    while (i < n) {
      if (this.#kind === KIND_V2 && this.#pos >= V2_HEADER_LENGTH) {
        // the v2 body is opaque until complete: skip it in one step
        const take = Math.min(this.#v2Total - this.#pos, n - i)
        i += take
        this.#pos += take
        if (this.#pos === this.#v2Total) {
          end = i
          break
        }
        continue
      }
      const complete = this.#step(chunk[i]!)
      i++
      this.#pos++
      if (complete) {
        end = i
        break
      }
    }
    if (end < 0) {
      this.#stash(chunk, n)
      return NEED_MORE
    }
    let bytes: Buffer
    if (this.#stored === null) {
      bytes = chunk.subarray(0, end)
    } else {
      this.#stash(chunk, end)
      bytes = this.#stored.subarray(0, this.#storedLength)
    }
    const header = this.#kind === KIND_V1 ? this.#decodeV1(bytes) : decodeV2(bytes)
    this.#finished = true
    this.#stored = null
    return { state: 'done', header, rest: chunk.subarray(end) }
  }

  /** Keeps chunk[0, count) of a header that spans chunks, in a buffer sized to the header. */
  #stash(chunk: Buffer, count: number): void {
    if (count === 0) return
    const need = this.#storedLength + count
    if (this.#stored === null || this.#stored.length < need) {
      const size = Math.max(need, this.#kind === KIND_V2 ? this.#v2Total || V2_HEADER_LENGTH : this.#v1Cap)
      const grown = Buffer.allocUnsafe(size)
      if (this.#stored !== null) this.#stored.copy(grown, 0, 0, this.#storedLength)
      this.#stored = grown
    }
    chunk.copy(this.#stored, this.#storedLength, 0, count)
    this.#storedLength = need
  }

  /** Checks one byte at position #pos; true when it completes the header. */
  #step(b: number): boolean {
    if (this.#pos === 0) {
      if (b === V1_PREFIX[0]) this.#kind = KIND_V1
      else if (b === V2_SIGNATURE[0]) this.#kind = KIND_V2
      else throw proxyError('not-proxy', `first byte ${hex(b)} starts neither "PROXY " nor the v2 signature`)
      return false
    }
    return this.#kind === KIND_V1 ? this.#stepV1(b) : this.#stepV2(b)
  }

  #stepV2(b: number): boolean {
    const pos = this.#pos
    if (pos < V2_SIGNATURE.length) {
      if (b !== V2_SIGNATURE[pos]) throw proxyError('bad-signature', `v2 signature byte ${pos} is ${hex(b)}`)
      return false
    }
    switch (pos) {
      case 12:
        if (b >> 4 !== 2) throw proxyError('v2-bad-version', `version ${b >> 4}, only 2 exists`)
        if ((b & 0x0f) > 1)
          throw proxyError('v2-bad-command', `command ${b & 0x0f} is neither LOCAL nor PROXY`)
        return false
      case 13:
        if (b >> 4 > 3) throw proxyError('v2-bad-family', `address family ${b >> 4} is not assigned`)
        if ((b & 0x0f) > 2) throw proxyError('v2-bad-transport', `transport ${b & 0x0f} is not assigned`)
        this.#v2Family = b >> 4
        return false
      case 14:
        this.#v2Total = b << 8
        return false
      default: {
        const length = this.#v2Total | b
        if (length > this.#maxV2Length) {
          throw proxyError('v2-too-long', `length ${length} exceeds the limit of ${this.#maxV2Length}`)
        }
        const addressLength = V2_ADDRESS_LENGTH[this.#v2Family]!
        if (length < addressLength) {
          throw proxyError(
            'v2-truncated-address',
            `length ${length} is shorter than the ${addressLength}-byte address block`,
          )
        }
        this.#v2Total = V2_HEADER_LENGTH + length
        return length === 0
      }
    }
  }

  #stepV1(b: number): boolean {
    const pos = this.#pos
    if (pos < V1_PREFIX.length) {
      if (b !== V1_PREFIX[pos]) throw proxyError('bad-signature', `v1 signature byte ${pos} is ${hex(b)}`)
      return false
    }
    if (this.#v1Proto < 0) {
      const k = pos - V1_PREFIX.length
      let candidates = 0
      for (let t = 0; t < 3; t++) {
        const token = V1_TOKENS[t]!
        if ((this.#v1Candidates & (1 << t)) === 0 || token[k] !== b) continue
        candidates |= 1 << t
        if (k === token.length - 1) {
          this.#v1Proto = t
          this.#v1Cap = t === TCP4 ? V1_TCP4_MAX_LENGTH : V1_MAX_LENGTH
          this.#prevSpace = t !== UNKNOWN
        }
      }
      if (candidates === 0)
        throw proxyError('v1-bad-protocol', `byte ${pos} (${hex(b)}) makes neither TCP4, TCP6 nor UNKNOWN`)
      this.#v1Candidates = candidates
      return false
    }
    if (this.#prevCR) {
      if (b !== LF) throw proxyError('v1-malformed', `CR at ${pos - 1} is followed by ${hex(b)}, not LF`)
      return true
    }
    // only an LF preceded by CR may occupy the last allowed position
    if (pos >= this.#v1Cap - 1) throw proxyError('v1-too-long', `no CRLF within ${this.#v1Cap} bytes`)
    if (b === LF) throw proxyError('v1-malformed', `LF at ${pos} without CR`)
    if (this.#v1Proto === UNKNOWN) {
      // §2.1: whatever follows UNKNOWN up to the CRLF is ignored; we still insist on text
      if (pos === UNKNOWN_END && b !== SPACE && b !== CR)
        throw proxyError('v1-bad-protocol', `UNKNOWN is followed by ${hex(b)}`)
      if (b === CR) this.#prevCR = true
      else if (b < 0x20 || b > 0x7e)
        throw proxyError('v1-malformed', `byte ${pos} is ${hex(b)}, not printable`)
      return false
    }
    if (b === CR) {
      if (this.#spaces !== 3 || this.#prevSpace)
        throw proxyError('v1-malformed', `line ends at ${pos} with fields missing`)
      this.#prevCR = true
      return false
    }
    if (b === SPACE) {
      if (this.#prevSpace) throw proxyError('v1-malformed', `empty field at ${pos}`)
      if (++this.#spaces > 3) throw proxyError('v1-malformed', `too many fields at ${pos}`)
      this.#prevSpace = true
      this.#fieldLength = 0
      return false
    }
    // fields: source, destination (digits and dots for TCP4; hex, colons, dots for TCP6), ports
    const allowed = this.#spaces >= 2 ? DIGIT : this.#v1Proto === TCP4 ? DIGIT | DOTC : HEX | DOTC | COLONC
    if ((CLASS[b]! & allowed) === 0)
      throw proxyError('v1-malformed', `byte ${pos} (${hex(b)}) cannot appear in this field`)
    if (this.#spaces >= 2) {
      // ports: decimal without heading zeroes (§2.1), so at most 5 digits; proxy-protocol-js
      // returns Number(text) and could no longer tell "0080" from "80"
      if (this.#fieldLength === 1 && this.#fieldFirst === 0x30)
        throw proxyError('v1-bad-port', `port with a leading zero at ${pos - 1}`)
      if (this.#fieldLength === 5) throw proxyError('v1-bad-port', `port longer than 5 digits at ${pos}`)
    }
    if (this.#fieldLength === 0) this.#fieldFirst = b
    this.#fieldLength++
    this.#prevSpace = false
    return false
  }

  #decodeV1(bytes: Buffer): ProxyHeader {
    if (this.#v1Proto === UNKNOWN) {
      return {
        version: 1,
        command: 'proxy',
        transport: 'unspec',
        family: 0,
        tlvs: [],
        byteLength: bytes.length,
      }
    }
    let parsed: InstanceType<typeof V1ProxyProtocol>
    try {
      parsed = V1ProxyProtocol.parse(bytes.toString('latin1'))
    } catch (err) {
      throw proxyError('v1-malformed', errorText(err))
    }
    const family = this.#v1Proto === TCP4 ? 4 : 6
    return {
      version: 1,
      command: 'proxy',
      transport: 'stream',
      family,
      source: v1Endpoint(parsed.source.ipAddress, parsed.source.port, family, 'source'),
      destination: v1Endpoint(parsed.destination.ipAddress, parsed.destination.port, family, 'destination'),
      tlvs: [],
      byteLength: bytes.length,
    }
  }
}

const scratch16 = new Uint8Array(16)

/**
 * Strict v1 field checks proxy-protocol-js leaves out (its regex takes any non-space text as an
 * address and any digit run as a port). IPv6 text is re-printed canonically so that
 * `2001:DB8::1` and `2001:db8:0::1` hash to the same key.
 */
function v1Endpoint(address: string, port: number, family: 4 | 6, which: string): Endpoint {
  if (family === 4) {
    if (!parseIPv4Into(address, scratch16, 0))
      throw proxyError('v1-bad-address', `${which} ${JSON.stringify(address)} is not IPv4`)
  } else {
    if (!parseIPv6Into(address, scratch16, 0))
      throw proxyError('v1-bad-address', `${which} ${JSON.stringify(address)} is not IPv6`)
    address = formatIPv6(scratch16)
  }
  // digits, no leading zero and at most 5 of them were checked byte by byte
  if (!Number.isInteger(port) || port > 65535)
    throw proxyError('v1-bad-port', `${which} port ${port} exceeds 65535`)
  return { address, port }
}

function errorText(err: unknown): string {
  if (err && typeof err === 'object' && 'message' in err && typeof err.message === 'string')
    return err.message
  return String(err)
}

/** Decodes a complete v2 header (bytes is exactly 16 + length bytes, already framed). */
function decodeV2(bytes: Buffer): ProxyHeader {
  let parsed: V2Parsed
  try {
    parsed = V2ProxyProtocol.parse(bytes)
  } catch (err) {
    throw proxyError('v2-malformed', errorText(err))
  }
  const tlvs = parseTlvs(bytes, V2_HEADER_LENGTH + V2_ADDRESS_LENGTH[bytes[13]! >> 4]!)
  const header: ProxyHeader = {
    version: 2,
    command: parsed.command === Command.LOCAL ? 'local' : 'proxy',
    transport:
      parsed.transportProtocol === TransportProtocol.STREAM
        ? 'stream'
        : parsed.transportProtocol === TransportProtocol.DGRAM
          ? 'dgram'
          : 'unspec',
    family: 0,
    tlvs,
    byteLength: bytes.length,
  }
  // LOCAL: "discard the protocol block including the family" (§2.2). UNSPEC transport or
  // family, and AF_UNIX, carry nothing an IP load balancer can use: real endpoints apply.
  if (header.command === 'proxy' && header.transport !== 'unspec') {
    const address = parsed.proxyAddress
    if (parsed.addressFamilyType === AddressFamilyType.INET && address instanceof IPv4ProxyAddress) {
      header.family = 4
      header.source = { address: formatIPv4(address.sourceAddress.address), port: address.sourcePort }
      header.destination = {
        address: formatIPv4(address.destinationAddress.address),
        port: address.destinationPort,
      }
    } else if (parsed.addressFamilyType === AddressFamilyType.INET6 && address instanceof IPv6ProxyAddress) {
      header.family = 6
      header.source = { address: formatIPv6(address.sourceAddress.address), port: address.sourcePort }
      header.destination = {
        address: formatIPv6(address.destinationAddress.address),
        port: address.destinationPort,
      }
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

/**
 * One-shot convenience over bytes already gathered: `need-more` if they are a valid prefix of a
 * header, else as ProxyHeaderParser.push.
 */
export function parseProxyHeader(bytes: Buffer, options?: ParserOptions): ParseResult {
  return new ProxyHeaderParser(options).push(bytes)
}
