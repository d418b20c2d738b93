import { ProxyHeaderError } from '../errors.js'

/** A layer-3/4 endpoint as Node prints it (`socket.remoteAddress`, `socket.remotePort`). */
export interface Endpoint {
  address: string
  port: number
}

/** One v2 Type-Length-Value extension, in wire order. */
export interface Tlv {
  type: number
  value: Buffer
}

export type ProxyCommand = 'proxy' | 'local'
export type ProxyTransport = 'stream' | 'dgram' | 'unspec'

/**
 * A decoded PROXY header. `source` and `destination` are present exactly when the header carries
 * addresses this load balancer can use; when they are absent (v1 `UNKNOWN`, v2 `LOCAL`, v2
 * AF_UNSPEC / AF_UNIX / transport UNSPEC) the spec says to use the connection's real endpoints.
 * Addresses are printed the way Node prints socket addresses (IPv4 dotted, IPv6 lower-case and
 * compressed, IPv4-mapped as `::ffff:a.b.c.d`), so a hash key from a proxied client and from a
 * direct one agree.
 */
export interface ProxyHeader {
  version: 1 | 2
  command: ProxyCommand
  transport: ProxyTransport
  family: 4 | 6 | 0
  source?: Endpoint
  destination?: Endpoint
  tlvs: Tlv[]
  /** PP2_TYPE_UNIQUE_ID: printable ASCII as is, anything else as lower-case hex. */
  uniqueId?: string
  /** PP2_TYPE_AUTHORITY (SNI or host name), UTF-8. */
  authority?: string
  /** Bytes the header occupied on the wire. */
  byteLength: number
}

/**
 * Every way a PROXY header can be refused, as the stable `reason` of a ProxyHeaderError (a
 * metrics label and a log field; admin can pre-register one series per entry). Decoding reasons
 * come first, then the ones acceptProxy adds for the socket around the header.
 */
export const PROXY_HEADER_REASONS = [
  'not-proxy', // first byte can start neither version: the peer is not speaking PROXY at all
  'bad-signature', // started like a v1/v2 signature and then deviated
  'v1-bad-protocol', // not TCP4, TCP6 or UNKNOWN
  'v1-too-long', // no CRLF within 107 bytes (56 for TCP4)
  'v1-malformed', // bad byte, spacing, field count, lone CR or LF
  'v1-bad-address',
  'v1-bad-port',
  'v2-bad-version',
  'v2-bad-command',
  'v2-bad-family',
  'v2-bad-transport',
  'v2-too-long', // declared length above maxV2Length (or, when encoding, above 65535)
  'v2-truncated-address', // declared length shorter than the family's address block
  'v2-malformed', // proxy-protocol-js refused the block
  'v2-bad-tlv', // a TLV overruns the header, or a known TLV has an impossible length
  'bad-crc32c',
  'timeout', // no complete header within the header timeout
  'closed-empty', // the peer closed before sending a single byte (e.g. a TCP-connect check)
  'truncated', // the peer closed in the middle of a header
  'socket-error',
] as const

export type ProxyHeaderReason = (typeof PROXY_HEADER_REASONS)[number]

export function proxyError(reason: ProxyHeaderReason, detail: string): ProxyHeaderError {
  return new ProxyHeaderError(reason, detail)
}
