import { encodeV2 } from './encode.js'
import { proxyError, type Endpoint, type Tlv } from './types.js'

export interface DatagramHeaderOptions {
  tlvs?: readonly Tlv[]
  crc32c?: boolean
}

/**
 * The header a UDP service prepends to every datagram it forwards (v2 PROXY, transport DGRAM,
 * §2.2: each datagram carries its own header since there is no connection to carry it once).
 * `src` is the client, `dst` the listener's address. A UDP session's two endpoints never change,
 * so build this once per session and send `[header, payload]` per datagram.
 *
 * Only v2 has a datagram form; asking for v1 is a configuration mistake and throws.
 */
export function datagramHeader(
  src: Endpoint,
  dst: Endpoint,
  version: 'v1' | 'v2' = 'v2',
  options: DatagramHeaderOptions = {},
): Buffer {
  if (version !== 'v2') throw proxyError('v1-bad-protocol', 'PROXY v1 has no datagram form; use v2 for UDP')
  return encodeV2({
    command: 'proxy',
    transport: 'dgram',
    src,
    dst,
    ...(options.tlvs === undefined ? {} : { tlvs: options.tlvs }),
    ...(options.crc32c === undefined ? {} : { crc32c: options.crc32c }),
  })
}
