/** Registered v2 TLV types (doc/proxy-protocol.txt §2.2). */
export const PP2_TYPE_ALPN = 0x01
export const PP2_TYPE_AUTHORITY = 0x02
export const PP2_TYPE_CRC32C = 0x03
export const PP2_TYPE_NOOP = 0x04
export const PP2_TYPE_UNIQUE_ID = 0x05
export const PP2_TYPE_SSL = 0x20
export const PP2_SUBTYPE_SSL_VERSION = 0x21
export const PP2_SUBTYPE_SSL_CN = 0x22
export const PP2_SUBTYPE_SSL_CIPHER = 0x23
export const PP2_SUBTYPE_SSL_SIG_ALG = 0x24
export const PP2_SUBTYPE_SSL_KEY_ALG = 0x25
export const PP2_SUBTYPE_SSL_GROUP = 0x26
export const PP2_SUBTYPE_SSL_SIG_SCHEME = 0x27
export const PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28
export const PP2_TYPE_NETNS = 0x30

/** PP2_CLIENT_* bits of the first byte of a PP2_TYPE_SSL value. */
export const PP2_CLIENT_SSL = 0x01
export const PP2_CLIENT_CERT_CONN = 0x02
export const PP2_CLIENT_CERT_SESS = 0x04

/** The spec caps UNIQUE_ID at 128 bytes (§2.2.5). */
export const MAX_UNIQUE_ID_LENGTH = 128
/** Not in the spec: HAProxy's HA_PP2_AUTHORITY_MAX; a DNS name never needs more. */
export const MAX_AUTHORITY_LENGTH = 255

/** The 12-byte v2 signature `\r\n\r\n\0\r\nQUIT\n`. */
export const V2_SIGNATURE: Buffer = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
])
export const V2_HEADER_LENGTH = 16
/** Address block length per v2 family nibble: UNSPEC, INET, INET6, UNIX (§2.2). */
export const V2_ADDRESS_LENGTH: readonly number[] = [0, 12, 36, 216]

/** Longest v1 line including CRLF (§2.1, the UNKNOWN worst case). */
export const V1_MAX_LENGTH = 107
/** Longest valid TCP4 line: "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n". */
export const V1_TCP4_MAX_LENGTH = 56

/** Default refusal threshold for the v2 length field: far above any real header (HAProxy sends
 * well under 1 KiB even with SSL TLVs) and small enough that a peer cannot make us buffer much. */
export const DEFAULT_MAX_V2_LENGTH = 4096
/** The spec asks for "at least 3 seconds to cover a TCP retransmit". */
export const DEFAULT_HEADER_TIMEOUT_MS = 5000

/** Names for formatHeader; reserved ranges are named by formatHeader itself. */
export const TLV_NAMES: Readonly<Record<number, string>> = {
  [PP2_TYPE_ALPN]: 'ALPN',
  [PP2_TYPE_AUTHORITY]: 'AUTHORITY',
  [PP2_TYPE_CRC32C]: 'CRC32C',
  [PP2_TYPE_NOOP]: 'NOOP',
  [PP2_TYPE_UNIQUE_ID]: 'UNIQUE_ID',
  [PP2_TYPE_SSL]: 'SSL',
  [PP2_TYPE_NETNS]: 'NETNS',
}

export const SSL_SUBTYPE_NAMES: Readonly<Record<number, string>> = {
  [PP2_SUBTYPE_SSL_VERSION]: 'SSL_VERSION',
  [PP2_SUBTYPE_SSL_CN]: 'SSL_CN',
  [PP2_SUBTYPE_SSL_CIPHER]: 'SSL_CIPHER',
  [PP2_SUBTYPE_SSL_SIG_ALG]: 'SSL_SIG_ALG',
  [PP2_SUBTYPE_SSL_KEY_ALG]: 'SSL_KEY_ALG',
  [PP2_SUBTYPE_SSL_GROUP]: 'SSL_GROUP',
  [PP2_SUBTYPE_SSL_SIG_SCHEME]: 'SSL_SIG_SCHEME',
  [PP2_SUBTYPE_SSL_CLIENT_CERT]: 'SSL_CLIENT_CERT',
}
