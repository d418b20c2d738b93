/**
 * PROXY protocol v1/v2 (doc/proxy-protocol.txt): encode for backends that want the client's
 * address, decode incrementally from trusted upstreams, inspect for operators. A thin layer over
 * proxy-protocol-js; see decode.ts and encode.ts for what the package does and what we add.
 */
export { PROXY_HEADER_REASONS } from './types.js'
export type { Endpoint, ProxyCommand, ProxyHeader, ProxyHeaderReason, ProxyTransport, Tlv } from './types.js'
export * from './constants.js'
export { crc32c } from './crc32c.js'
export { type EncodeV2Options, encodeV1, encodeV2, makeUniqueId, uniqueIdTlv } from './encode.js'
export { type ParseResult, type ParserOptions, ProxyHeaderParser, parseProxyHeader } from './decode.js'
export { type AcceptProxyOptions, type AcceptedProxy, acceptProxy } from './accept.js'
export { INSPECT_BYTES, formatHeader, hexDump } from './format.js'
export { type Inspector, type InspectorOptions, startInspector } from './inspect.js'
export { type DatagramHeaderOptions, datagramHeader } from './datagram.js'
