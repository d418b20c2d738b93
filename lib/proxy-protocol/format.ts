import {
  PP2_CLIENT_CERT_CONN,
  PP2_CLIENT_CERT_SESS,
  PP2_CLIENT_SSL,
  PP2_SUBTYPE_SSL_CLIENT_CERT,
  PP2_TYPE_ALPN,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_CRC32C,
  PP2_TYPE_NETNS,
  PP2_TYPE_NOOP,
  PP2_TYPE_SSL,
  PP2_TYPE_UNIQUE_ID,
  SSL_SUBTYPE_NAMES,
  TLV_NAMES,
} from './constants.js'
import type { Endpoint, ProxyHeader, Tlv } from './types.js'

/** How many bytes after the header `l4lb proxy-inspect` shows. */
export const INSPECT_BYTES = 64

/**
 * A readable, multi-line description of a header for `l4lb proxy-inspect`: version, command,
 * addresses, every TLV by name with its value decoded, then up to 64 bytes that followed the
 * header as a hex dump. Everything that came off the wire is escaped (JSON string syntax) so a
 * hostile header cannot drive the operator's terminal.
 */
export function formatHeader(header: ProxyHeader, firstBytes?: Buffer): string {
  const lines: string[] = []
  const what =
    header.version === 1
      ? header.family === 0
        ? 'UNKNOWN'
        : `TCP${header.family}`
      : `${header.command.toUpperCase()} ${header.transport} ${header.family === 0 ? 'unspec' : `IPv${header.family}`}`
  lines.push(`PROXY v${header.version} ${what} (${header.byteLength} bytes)`)
  if (header.source && header.destination) {
    lines.push(`  source       ${endpointText(header.source)}`)
    lines.push(`  destination  ${endpointText(header.destination)}`)
  } else {
    lines.push("  addresses    none: the connection's own endpoints apply")
  }
  for (const tlv of header.tlvs) lines.push(...tlvLines(tlv))
  if (firstBytes !== undefined) {
    const shown = firstBytes.subarray(0, INSPECT_BYTES)
    lines.push(
      shown.length === 0 ? '  no bytes after the header' : `  first ${shown.length} bytes after the header:`,
    )
    lines.push(...hexDump(shown, '    '))
  }
  return lines.join('\n') + '\n'
}

function endpointText(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
}

function tlvName(type: number): string {
  const known = TLV_NAMES[type]
  if (known !== undefined) return known
  if (type >= 0xe0 && type <= 0xef) return 'custom'
  if (type >= 0xf0 && type <= 0xf7) return 'experimental'
  if (type >= 0xf8) return 'future'
  return 'unassigned'
}

function tlvLines(tlv: Tlv): string[] {
  const head = `  TLV ${hex2(tlv.type)} ${tlvName(tlv.type)} (${tlv.value.length} bytes)`
  switch (tlv.type) {
    case PP2_TYPE_ALPN:
    case PP2_TYPE_AUTHORITY:
    case PP2_TYPE_NETNS:
      return [`${head} ${text(tlv.value)}`]
    case PP2_TYPE_UNIQUE_ID:
      return [`${head} ${text(tlv.value)} hex ${tlv.value.toString('hex')}`]
    case PP2_TYPE_CRC32C:
      // a header that reaches formatHeader was parsed, and parsing verifies the checksum
      return [`${head} 0x${tlv.value.toString('hex')} (verified)`]
    case PP2_TYPE_NOOP:
      return [head]
    case PP2_TYPE_SSL:
      return [head, ...sslLines(tlv.value)]
    default:
      return [`${head} ${hexPreview(tlv.value)}`]
  }
}

/** struct pp2_tlv_ssl { uint8 client; uint32 verify; struct pp2_tlv sub_tlv[]; } (§2.2.6) */
function sslLines(value: Buffer): string[] {
  if (value.length < 5) return [`      malformed: ${value.length} bytes, at least 5 expected`]
  const client = value[0]!
  const flags = [
    client & PP2_CLIENT_SSL ? 'SSL' : '',
    client & PP2_CLIENT_CERT_CONN ? 'CERT_CONN' : '',
    client & PP2_CLIENT_CERT_SESS ? 'CERT_SESS' : '',
  ].filter(Boolean)
  const verify = value.readUInt32BE(1)
  const lines = [
    `      client ${flags.join('|') || 'none'} (${hex2(client)}), verify ${verify}${verify === 0 ? ' (certificate verified)' : ''}`,
  ]
  let at = 5
  while (at < value.length) {
    if (at + 3 > value.length) {
      lines.push(`      ${value.length - at} stray bytes`)
      break
    }
    const type = value[at]!
    const length = value.readUInt16BE(at + 1)
    const sub = value.subarray(at + 3, Math.min(at + 3 + length, value.length))
    const name = SSL_SUBTYPE_NAMES[type] ?? 'unknown'
    const shown = type === PP2_SUBTYPE_SSL_CLIENT_CERT ? hexPreview(sub) : text(sub)
    lines.push(
      `      ${hex2(type)} ${name} (${length} bytes) ${shown}${sub.length < length ? ' (truncated)' : ''}`,
    )
    at += 3 + length
  }
  return lines
}

function hex2(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`
}

function text(value: Buffer): string {
  return JSON.stringify(value.toString('utf8'))
}

function hexPreview(value: Buffer): string {
  return value.length <= 32 ? value.toString('hex') : `${value.subarray(0, 32).toString('hex')}...`
}

/** `hexdump -C` style: offset, 16 bytes in hex, printable ASCII. */
export function hexDump(bytes: Buffer, indent = ''): string[] {
  const lines: string[] = []
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, at + 16)
    let hexes = ''
    let ascii = ''
    for (let i = 0; i < 16; i++) {
      const b = row[i]
      hexes += b === undefined ? '   ' : `${b.toString(16).padStart(2, '0')} `
      if (i === 7) hexes += ' '
      if (b !== undefined) ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.'
    }
    lines.push(`${indent}${at.toString(16).padStart(8, '0')}  ${hexes} |${ascii}|`)
  }
  return lines
}
