import { ConfigError, ProxyHeaderError, StateError } from '../errors.js'
import { DEFAULT_MAX_V2_LENGTH, V1_MAX_LENGTH, V1_TCP4_MAX_LENGTH, V2_ADDRESS_LENGTH, V2_HEADER_LENGTH, V2_SIGNATURE } from './constants.js'
import { decodeV2, hex } from './decode-v2.js'
import { formatIPv6, parseIPv4Into, parseIPv6Into } from './ip.js'
import { type Endpoint, type ProxyHeader, proxyError } from './types.js'

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

/**
 * An incremental PROXY v1/v2 header reader: feed it the chunks a socket delivers, in order, until
 * it answers `done` (with the bytes that followed the header) or throws a ProxyHeaderError. It
 * follows doc/proxy-protocol.txt: it refuses at the first byte that cannot continue a valid
 * header (signature, version, command, family, v1 token, byte classes, lengths), and waits only
 * while the bytes so far could still be one.
 *
 * The header is parsed once, by this walk: it records where the v1 fields are, and a complete
 * header is decoded from those positions (v1) or from the fixed offsets of the v2 address block
 * (decode-v2.ts, which also walks the TLVs and checks CRC32C). proxy-protocol-js, which builds
 * the headers we send (encode.ts), parses complete input only, does not say how long a v2 header
 * is and does not bound a v1 line, so it could not be the incremental reader; running it again
 * over a header this walk had already checked would be a second parse of the same bytes.
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
  /** Where each v1 field starts: source, destination, source port, destination port; then the CR. */
  readonly #fieldAt = [0, 0, 0, 0, 0]
  #v2Family = 0
  #v2Total = 0
  #failure: ProxyHeaderError | null = null
  #finished = false

  constructor(options: ParserOptions = {}) {
    const max = options.maxV2Length ?? DEFAULT_MAX_V2_LENGTH
    if (!Number.isInteger(max) || max < 0 || max > 0xffff) {
      throw new ConfigError('maxV2Length', max, 'must be an integer 0-65535')
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
    if (this.#finished) throw new StateError('ProxyHeaderParser.push after the header was complete')
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
          this.#fieldAt[0] = pos + 1
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
      this.#fieldAt[4] = pos + 1 // as if a separator followed, like the other fields
      this.#prevCR = true
      return false
    }
    if (b === SPACE) {
      if (this.#prevSpace) throw proxyError('v1-malformed', `empty field at ${pos}`)
      if (++this.#spaces > 3) throw proxyError('v1-malformed', `too many fields at ${pos}`)
      this.#fieldAt[this.#spaces] = pos + 1
      this.#prevSpace = true
      this.#fieldLength = 0
      return false
    }
    // fields: source, destination (digits and dots for TCP4; hex, colons, dots for TCP6), ports
    const allowed = this.#spaces >= 2 ? DIGIT : this.#v1Proto === TCP4 ? DIGIT | DOTC : HEX | DOTC | COLONC
    if ((CLASS[b]! & allowed) === 0)
      throw proxyError('v1-malformed', `byte ${pos} (${hex(b)}) cannot appear in this field`)
    if (this.#spaces >= 2) {
      // ports: decimal without heading zeroes (§2.1), so at most 5 digits
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
    const field = (k: number): string => bytes.toString('latin1', this.#fieldAt[k]!, this.#fieldAt[k + 1]! - 1)
    const family = this.#v1Proto === TCP4 ? 4 : 6
    return {
      version: 1,
      command: 'proxy',
      transport: 'stream',
      family,
      source: v1Endpoint(field(0), Number(field(2)), family, 'source'),
      destination: v1Endpoint(field(1), Number(field(3)), family, 'destination'),
      tlvs: [],
      byteLength: bytes.length,
    }
  }
}

const scratch16 = new Uint8Array(16)

/**
 * A v1 address is parsed here, strictly (the walk only checked its byte classes); IPv6 text is
 * re-printed canonically so that `2001:DB8::1` and `2001:db8:0::1` hash to the same key.
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

/**
 * One-shot convenience over bytes already gathered: `need-more` if they are a valid prefix of a
 * header, else as ProxyHeaderParser.push.
 */
export function parseProxyHeader(bytes: Buffer, options?: ParserOptions): ParseResult {
  return new ProxyHeaderParser(options).push(bytes)
}
