/**
 * Addresses as users type them and as sockets report them: `host:port` parsing and printing,
 * canonical IP text (the form keys are hashed from), and CIDR matching for ACLs and
 * accept-proxy trust (parsed with `ip-address`, matched as precomputed integers so a check per
 * connection costs a few comparisons, not a parse).
 */
import { isIP, SocketAddress } from 'node:net'
import { Address4, Address6 } from 'ip-address'
import { AddressError } from '../errors.js'

export interface HostPort {
  /** IP literal (without brackets) or a hostname still to be resolved. */
  readonly host: string
  readonly port: number
  /** 4 or 6 for an IP literal, 0 for a hostname. */
  readonly family: 0 | 4 | 6
}

const HOSTNAME = /^(?=.{1,253}$)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)*\.?$/

export function parsePort(text: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw new AddressError(text, 'port must be 1-65535')
  const port = Number(text)
  if (port < 1 || port > 65535) throw new AddressError(text, 'port must be 1-65535')
  return port
}

/**
 * Parses `host:port`, `[v6]:port`, or `:port`. Listeners may ask for port 0 (any free port,
 * printed in the `listening` log line).
 *
 * Parses `host:port`, `[v6]:port`, or `:port` (host empty: `emptyHost` is used, e.g. `::` for a
 * listener meaning every address). Errors carry a message without the input (the caller names
 * the flag and value).
 */
export function parseHostPort(text: string, emptyHost?: string, allowPortZero = false): HostPort {
  let host: string
  let portText: string
  if (text.startsWith('[')) {
    const close = text.indexOf(']')
    if (close < 0) throw new AddressError(text, 'missing "]" after IPv6 address')
    host = text.slice(1, close)
    if (text[close + 1] !== ':') throw new AddressError(text, 'expected ":port" after "]"')
    portText = text.slice(close + 2)
    if (isIP(host) !== 6) throw new AddressError(text, `"${host}" is not an IPv6 address`)
  } else {
    const colon = text.lastIndexOf(':')
    if (colon < 0) throw new AddressError(text, 'expected host:port')
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (host.includes(':')) throw new AddressError(text, 'IPv6 addresses need brackets: [addr]:port')
  }
  if (portText === '') throw new AddressError(text, 'missing port')
  const port = allowPortZero && portText === '0' ? 0 : parsePortOr(text, portText)
  if (host === '') {
    if (emptyHost === undefined) throw new AddressError(text, 'missing host')
    host = emptyHost
  }
  const ipFamily = isIP(host)
  if (ipFamily === 4 || ipFamily === 6) return { host: canonicalIp(host), port, family: ipFamily }
  if (/^[0-9.]+$/.test(host)) throw new AddressError(text, `"${host}" is not a valid IPv4 address`)
  if (!HOSTNAME.test(host)) throw new AddressError(text, `"${host}" is not a valid hostname`)
  return { host: host.toLowerCase(), port, family: 0 }
}

function parsePortOr(text: string, portText: string): number {
  try {
    return parsePort(portText)
  } catch {
    throw new AddressError(text, 'port must be 1-65535')
  }
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * Canonical text of an IP as hashed and logged: IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a
 * dual-stack `[::]` listener reports for IPv4 clients) becomes plain IPv4, so a client hashes the
 * same whichever listener it came through; IPv6 is lowercased and compressed.
 * Precondition: `ip` is a valid literal (sockets and parsers only give those).
 */
export function canonicalIp(ip: string): string {
  if (ip.startsWith('::ffff:') && ip.includes('.')) return ip.slice(7)
  if (!ip.includes(':')) return ip
  // Node's SocketAddress round-trips through inet_pton/inet_ntop: RFC 5952 text, no JS parse.
  try {
    const text = new SocketAddress({ address: ip, family: 'ipv6' }).address
    return text.startsWith('::ffff:') && text.includes('.') ? text.slice(7) : text
  } catch {
    return ip.toLowerCase()
  }
}

/** One parsed CIDR block, matched against canonical IP text. */
interface Block {
  readonly family: 4 | 6
  /** IPv4: one 32-bit word; IPv6: four words, network order. */
  readonly words: Uint32Array
  readonly masks: Uint32Array
}

/** A list of CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, or single addresses). */
export class CidrList {
  readonly #blocks: readonly Block[]
  readonly source: readonly string[]

  constructor(cidrs: readonly string[]) {
    this.source = cidrs
    this.#blocks = cidrs.map(parseBlock)
  }

  get size(): number {
    return this.#blocks.length
  }

  /**
   * The blocks as 9 words each — family, words[4], masks[4], unused words 0 — for the native
   * plane's admit stage (lib/native/src/admit.h l4_cidr), which matches what this class parsed.
   */
  packed(): Uint32Array {
    const out = new Uint32Array(this.#blocks.length * 9)
    this.#blocks.forEach((block, i) => {
      out[i * 9] = block.family
      out.set(block.words, i * 9 + 1)
      out.set(block.masks, i * 9 + 5)
    })
    return out
  }

  /**
   * True when `ip` (any textual form, including IPv4-mapped IPv6) falls in one of the blocks.
   * Allocates nothing: the text is parsed into a shared scratch array.
   */
  contains(ip: string): boolean {
    const family = parseIpInto(ip, SCRATCH)
    return family !== 0 && this.containsWords(family, SCRATCH)
  }

  /**
   * The same test for an address already parsed with parseIpInto, so one parse serves several
   * lists (an allow and a deny list). Precondition: `family` is what parseIpInto returned.
   */
  containsWords(family: 4 | 6, words: Uint32Array): boolean {
    const n = family === 4 ? 1 : 4
    for (const block of this.#blocks) {
      if (block.family !== family) continue
      let inside = true
      for (let i = 0; i < n; i++) {
        if (((words[i]! & block.masks[i]!) >>> 0) !== block.words[i]) {
          inside = false
          break
        }
      }
      if (inside) return true
    }
    return false
  }
}

const SCRATCH = new Uint32Array(4)

function parseBlock(cidr: string): Block {
  const slash = cidr.indexOf('/')
  const ipText = slash < 0 ? cidr : cidr.slice(0, slash)
  const family = isIP(ipText)
  if (family !== 4 && family !== 6) throw new AddressError(cidr, 'not an IPv4 or IPv6 CIDR block')
  const bits = family === 4 ? 32 : 128
  let prefix = bits
  if (slash >= 0) {
    const prefixText = cidr.slice(slash + 1)
    if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
      throw new AddressError(cidr, `prefix length must be 0-${bits}`)
    }
    prefix = Number(prefixText)
  }
  const canonical = family === 4 ? new Address4(ipText).correctForm() : new Address6(ipText).correctForm()
  let words = family === 4 ? ipv4Words(canonical) : ipv6Words(canonical)
  // `::ffff:10.0.0.0/104` is an IPv4 block: addresses are matched as IPv4 once unmapped.
  if (family === 6 && prefix >= 96 && words[0] === 0 && words[1] === 0 && words[2] === 0xffff) {
    return finishBlock(4, Uint32Array.of(words[3]!), prefix - 96)
  }
  return finishBlock(family, words, prefix)
}

function finishBlock(family: 4 | 6, words: Uint32Array, prefix: number): Block {
  const masks = new Uint32Array(words.length)
  for (let i = 0; i < masks.length; i++) {
    const wordBits = Math.max(0, Math.min(32, prefix - i * 32))
    masks[i] = wordBits === 0 ? 0 : (0xffffffff << (32 - wordBits)) >>> 0
    words[i] = (words[i]! & masks[i]!) >>> 0
  }
  return { family, words, masks }
}

function ipv4Words(ip: string): Uint32Array {
  const parts = ip.split('.')
  const out = new Uint32Array(1)
  out[0] = ((Number(parts[0]) << 24) | (Number(parts[1]) << 16) | (Number(parts[2]) << 8) | Number(parts[3])) >>> 0
  return out
}

function ipv6Words(ip: string): Uint32Array {
  const bytes = new Address6(ip).toUnsignedByteArray()
  const padded = new Array<number>(16 - bytes.length).fill(0).concat(bytes)
  const out = new Uint32Array(4)
  for (let i = 0; i < 4; i++) {
    out[i] = ((padded[i * 4]! << 24) | (padded[i * 4 + 1]! << 16) | (padded[i * 4 + 2]! << 8) | padded[i * 4 + 3]!) >>> 0
  }
  return out
}

/**
 * Parses an IP literal into 32-bit words, network order, without allocating (the ACL check runs
 * once per connection): returns 4 with the address in `out[0]`, 6 with it in `out[0..3]`, or 0
 * when `ip` is not an address. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, in any spelling) returns 4:
 * a dual-stack listener reports IPv4 clients that way and they must match IPv4 blocks. A zone
 * (`fe80::1%eth0`) is ignored. Precondition: `out` has room for 4 words.
 */
export function parseIpInto(ip: string, out: Uint32Array): 0 | 4 | 6 {
  let end = ip.indexOf('%')
  if (end < 0) end = ip.length
  if (ip.indexOf(':') < 0) return parseIpv4(ip, 0, end, out, 0) ? 4 : 0
  if (!parseIpv6(ip, end, out)) return 0
  if (out[0] === 0 && out[1] === 0 && out[2] === 0xffff) {
    out[0] = out[3]!
    return 4
  }
  return 6
}

/** Dotted quad in ip[from, end) into out[at]; no leading zeros (as inet_pton and isIP). */
function parseIpv4(ip: string, from: number, end: number, out: Uint32Array, at: number): boolean {
  let value = 0
  let parts = 0
  let i = from
  while (parts < 4) {
    let octet = 0
    let digits = 0
    const start = i
    while (i < end) {
      const c = ip.charCodeAt(i) - 48
      if (c < 0 || c > 9) break
      octet = octet * 10 + c
      digits++
      i++
    }
    if (digits === 0 || digits > 3 || octet > 255 || (digits > 1 && ip.charCodeAt(start) === 48)) return false
    value = value * 256 + octet
    parts++
    if (parts === 4) break
    if (i >= end || ip.charCodeAt(i) !== 46) return false
    i++
  }
  if (i !== end) return false
  out[at] = value
  return true
}

const GROUPS = new Uint16Array(8)

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/** RFC 4291 section 2.2 text forms, including `::` and a trailing dotted quad. */
function parseIpv6(ip: string, end: number, out: Uint32Array): boolean {
  const g = GROUPS
  let n = 0
  let gap = -1
  let i = 0
  if (ip.charCodeAt(0) === 58) {
    if (ip.charCodeAt(1) !== 58) return false
    gap = 0
    i = 2
  }
  while (i < end) {
    let value = 0
    let digits = 0
    let j = i
    for (; j < end; j++) {
      const h = hexValue(ip.charCodeAt(j))
      if (h < 0) break
      value = value * 16 + h
      digits++
    }
    if (j < end && ip.charCodeAt(j) === 46) {
      // the last 32 bits as a dotted quad
      if (n > 6 || !parseIpv4(ip, i, end, out, 3)) return false
      g[n++] = out[3]! >>> 16
      g[n++] = out[3]! & 0xffff
      i = end
      break
    }
    if (digits === 0 || digits > 4 || n === 8) return false
    g[n++] = value
    if (j === end) {
      i = end
      break
    }
    if (ip.charCodeAt(j) !== 58) return false
    j++
    if (ip.charCodeAt(j) === 58) {
      if (gap >= 0) return false
      gap = n
      j++
    } else if (j >= end) {
      return false
    }
    i = j
  }
  if (gap < 0) {
    if (n !== 8) return false
  } else {
    if (n > 7) return false
    const tail = n - gap
    for (let k = 0; k < tail; k++) g[7 - k] = g[n - 1 - k]!
    for (let k = gap; k < 8 - tail; k++) g[k] = 0
  }
  for (let k = 0; k < 4; k++) out[k] = ((g[2 * k]! << 16) | g[2 * k + 1]!) >>> 0
  return true
}
