import { SocketAddress } from 'node:net'
import t from 'tap'
import { AddressError, ProxyHeaderError } from '../../lib/errors.js'
import {
  PP2_TYPE_CRC32C,
  PP2_TYPE_UNIQUE_ID,
  ProxyHeaderParser,
  V2_SIGNATURE,
  crc32c,
  encodeV1,
  encodeV2,
  formatHeader,
  makeUniqueId,
  parseProxyHeader,
  uniqueIdTlv,
  type ProxyHeader,
} from '../../lib/proxy-protocol/index.js'
import { formatIPv6, parseIPv6Into } from '../../lib/proxy-protocol/ip.js'
import { SSL_TLV, prng, refusal, v2Bytes, validSamples } from './helpers.js'

function parsed(bytes: Buffer): ProxyHeader {
  const result = parseProxyHeader(bytes)
  if (result.state !== 'done') throw new Error('expected a complete header')
  return result.header
}

/** Bit-at-a-time CRC32C, independent of the table the module builds. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff
  for (const b of bytes) {
    crc ^= b
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1
  }
  return (crc ^ 0xffffffff) >>> 0
}

t.test('crc32c matches the published Castagnoli vectors', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283, 'the "check" value of CRC-32C')
  // RFC 3720 Appendix B.4 (iSCSI), the same polynomial SCTP uses (RFC 4960 Appendix B)
  t.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa, '32 zero bytes')
  t.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43, '32 0xff bytes')
  t.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e, 'incrementing')
  t.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c, 'decrementing')
  t.equal(crc32c(Buffer.alloc(0)), 0, 'empty input')
  const random = prng(7)
  for (let n = 0; n < 50; n++) {
    const bytes = Buffer.from(Array.from({ length: n * 7 }, () => Math.floor(random() * 256)))
    t.equal(crc32c(bytes), crc32cBitwise(bytes), `random ${bytes.length} bytes`)
  }
})

t.test('v1 lines are byte-exact with the spec', async (t) => {
  // §2.1's own example
  t.equal(
    encodeV1({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 }, 4).toString(
      'latin1',
    ),
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n',
  )
  t.equal(
    encodeV1({ address: '2001:DB8:0:0::1', port: 1234 }, { address: '2001:db8::2', port: 443 }, 6).toString(
      'latin1',
    ),
    'PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n',
    'TCP6 addresses are printed canonically',
  )
  t.equal(
    encodeV1(undefined, { address: '10.0.0.1', port: 1 }).toString('latin1'),
    'PROXY UNKNOWN\r\n',
    'no source → UNKNOWN',
  )
  t.equal(
    encodeV1({ address: '', port: 1 }, { address: '10.0.0.1', port: 1 }).toString('latin1'),
    'PROXY UNKNOWN\r\n',
  )
})

t.test('a dual-stack client is written in the family its connection really has', async (t) => {
  const mapped = { address: '::ffff:203.0.113.7', port: 40000 }
  const local4 = { address: '10.0.0.1', port: 5432 }
  const local6 = { address: '2001:db8::1', port: 5432 }
  t.equal(
    encodeV1(mapped, local4).toString(),
    'PROXY TCP4 203.0.113.7 10.0.0.1 40000 5432\r\n',
    'mapped + IPv4 → TCP4',
  )
  t.equal(
    encodeV1(mapped, local6).toString(),
    'PROXY TCP6 ::ffff:cb00:7107 2001:db8::1 40000 5432\r\n',
    'mixed → TCP6, hex groups only as §2.1 asks',
  )
  t.equal(
    encodeV1(mapped, { address: '::ffff:10.0.0.1', port: 5432 }).toString(),
    'PROXY TCP4 203.0.113.7 10.0.0.1 40000 5432\r\n',
    'both mapped (an IPv4 client on a :: listener) → TCP4',
  )
  t.throws(() => encodeV1(local6, local4, 4), AddressError, 'TCP4 cannot carry IPv6')
  t.throws(
    () => encodeV1({ address: 'db.example', port: 1 }, local4),
    AddressError,
    'names are not addresses',
  )
  t.throws(() => encodeV1({ address: '10.0.0.2', port: 65536 }, local4), AddressError, 'port range')
  t.equal(
    encodeV1({ address: 'fe80::1%eth0', port: 1 }, local6).toString(),
    'PROXY TCP6 fe80::1 2001:db8::1 1 5432\r\n',
    'zone dropped',
  )

  const v4 = encodeV2({ command: 'proxy', transport: 'stream', src: mapped, dst: local4 })
  t.equal(v4[13], 0x11, 'v2: mapped + IPv4 → AF_INET')
  t.same(parsed(v4).source, { address: '203.0.113.7', port: 40000 })
  const v6 = encodeV2({
    command: 'proxy',
    transport: 'stream',
    src: { address: '198.51.100.9', port: 7 },
    dst: local6,
  })
  t.equal(v6[13], 0x21, 'v2: IPv4 + IPv6 → AF_INET6')
  t.same(
    parsed(v6).source,
    { address: '::ffff:198.51.100.9', port: 7 },
    'the IPv4 side is mapped, printed as Node prints it',
  )
})

t.test('v2 headers are byte-exact with the spec', async (t) => {
  t.same(V2_SIGNATURE, Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1'), 'the 12-byte signature')
  // TCP/IPv4 172.19.0.1:42578 → 172.19.0.3:80, as HAProxy sends it (captured on the wire)
  const captured = Buffer.from('0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050', 'hex')
  t.same(
    encodeV2({
      command: 'proxy',
      transport: 'stream',
      src: { address: '172.19.0.1', port: 42578 },
      dst: { address: '172.19.0.3', port: 80 },
    }),
    captured,
  )
  t.same(parsed(captured), {
    version: 2,
    command: 'proxy',
    transport: 'stream',
    family: 4,
    source: { address: '172.19.0.1', port: 42578 },
    destination: { address: '172.19.0.3', port: 80 },
    tlvs: [],
    byteLength: 28,
  })
  t.same(
    encodeV2({ command: 'local', transport: 'stream' }),
    v2Bytes(0x20, 0x00, []),
    'LOCAL: AF_UNSPEC, length 0',
  )
  t.same(
    encodeV2({
      command: 'proxy',
      transport: 'stream',
      src: undefined,
      dst: { address: '10.0.0.1', port: 1 },
    }),
    v2Bytes(0x20, 0x00, []),
    'PROXY with a vanished peer degrades to LOCAL, as HAProxy does',
  )
  const ip6 = (last: number) => [0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), last]
  t.same(
    encodeV2({
      command: 'proxy',
      transport: 'dgram',
      src: { address: '2001:db8::1', port: 0x1234 },
      dst: { address: '2001:db8::2', port: 53 },
    }),
    v2Bytes(0x21, 0x22, [...ip6(1), ...ip6(2), 0x12, 0x34, 0x00, 53]),
    'UDP over IPv6',
  )
  t.same(
    encodeV2({
      command: 'proxy',
      transport: 'stream',
      src: { address: '10.0.0.1', port: 1 },
      dst: { address: '10.0.0.2', port: 2 },
      tlvs: [{ type: PP2_TYPE_UNIQUE_ID, value: Buffer.from('ab') }],
    }),
    v2Bytes(0x21, 0x11, [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, 0x05, 0x00, 0x02, 0x61, 0x62]),
    'TLVs follow the addresses and count in the length field',
  )
})

t.test('CRC32C covers the whole header with its own field zeroed', async (t) => {
  const header = encodeV2({
    command: 'proxy',
    transport: 'stream',
    src: { address: '10.0.0.1', port: 1 },
    dst: { address: '10.0.0.2', port: 2 },
    tlvs: [uniqueIdTlv('x')],
    crc32c: true,
  })
  t.equal(header[header.length - 7], PP2_TYPE_CRC32C)
  const zeroed = Buffer.from(header)
  zeroed.fill(0, zeroed.length - 4)
  t.equal(header.readUInt32BE(header.length - 4), crc32cBitwise(zeroed), 'checksum in network byte order')
  t.same(
    parsed(header).tlvs.map((x) => x.type),
    [PP2_TYPE_UNIQUE_ID, PP2_TYPE_CRC32C],
  )

  for (let i = 0; i < header.length; i++) {
    if (i === 13 || i === 14 || i === 15) continue // changes framing, tested elsewhere
    // the CRC32C TLV's own type byte: 0x03 → 0x02 turns it into a 4-byte AUTHORITY, and a
    // header without a checksum is valid; no checksum can protect the byte that announces it
    if (i === header.length - 7) continue
    const corrupt = Buffer.from(header)
    corrupt[i] = corrupt[i]! ^ 0x01
    t.throws(() => parseProxyHeader(corrupt), ProxyHeaderError, `bit flipped in byte ${i} is refused`)
  }
  const flipped = Buffer.from(header)
  flipped[20] = flipped[20]! ^ 0x80 // inside the addresses: only the checksum can notice
  t.equal(
    refusal(() => parseProxyHeader(flipped)),
    'bad-crc32c',
  )
})

t.test('every valid shape round-trips', async (t) => {
  for (const sample of validSamples()) {
    const header = parsed(sample.bytes)
    t.match(header, sample.expect, sample.name)
    t.equal(header.byteLength, sample.bytes.length, `${sample.name}: length`)
  }
  const withTlvs = validSamples().find((s) => s.name.includes('every TLV'))!
  const header = parsed(withTlvs.bytes)
  t.same(
    header.tlvs.map((x) => x.type),
    [0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xe3, 0x03],
    'TLVs come back in wire order, CRC32C last',
  )
  t.same(header.tlvs[4]!.value, SSL_TLV.value, 'SSL TLV value intact')
})

t.test('makeUniqueId is short, url-safe and does not repeat', async (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 20000; i++) seen.add(makeUniqueId())
  t.equal(seen.size, 20000)
  for (const id of [...seen].slice(0, 100)) t.match(id, /^[A-Za-z0-9_-]{16}$/)
  const header = parsed(encodeV2({ command: 'local', transport: 'stream', tlvs: [uniqueIdTlv('abc')] }))
  t.equal(header.uniqueId, 'abc')
  const binary = parsed(
    encodeV2({ command: 'local', transport: 'stream', tlvs: [{ type: 5, value: Buffer.from([0, 255]) }] }),
  )
  t.equal(binary.uniqueId, '00ff', 'a binary id is shown as hex')
})

t.test('encoding refuses what the protocol cannot carry', async (t) => {
  const base = {
    command: 'proxy' as const,
    transport: 'stream' as const,
    src: { address: '10.0.0.1', port: 1 },
    dst: { address: '10.0.0.2', port: 2 },
  }
  t.equal(
    refusal(() => encodeV2({ ...base, tlvs: [uniqueIdTlv('x'.repeat(129))] })),
    'v2-bad-tlv',
    'UNIQUE_ID over 128',
  )
  t.ok(encodeV2({ ...base, tlvs: [uniqueIdTlv('x'.repeat(128))] }), 'UNIQUE_ID of exactly 128')
  t.equal(
    refusal(() => encodeV2({ ...base, tlvs: [{ type: 256, value: Buffer.alloc(0) }] })),
    'v2-bad-tlv',
  )
  t.equal(
    refusal(() => encodeV2({ ...base, tlvs: [{ type: PP2_TYPE_CRC32C, value: Buffer.alloc(4) }] })),
    'v2-bad-tlv',
  )
  t.equal(
    refusal(() => encodeV2({ ...base, tlvs: [{ type: 0xe0, value: Buffer.alloc(65530) }] })),
    'v2-too-long',
  )
  t.throws(() => encodeV2({ ...base, src: { address: '10.0.0.1', port: -1 } }), AddressError)
})

t.test('IPv6 text is read strictly and printed exactly as Node prints it', async (t) => {
  const random = prng(42)
  const bytes = new Uint8Array(16)
  const back = new Uint8Array(16)
  for (let n = 0; n < 3000; n++) {
    // bias towards zero words so compression and the IPv4 forms are exercised
    for (let w = 0; w < 8; w++) {
      const r = random()
      const word = r < 0.5 ? 0 : r < 0.6 ? 0xffff : Math.floor(random() * 0x10000)
      bytes[w * 2] = word >> 8
      bytes[w * 2 + 1] = word & 0xff
    }
    if (n % 10 === 0) bytes.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 0)
    const text = formatIPv6(bytes)
    const node = new SocketAddress({ address: text, family: 'ipv6' }).address
    if (text !== node) t.fail(`${Buffer.from(bytes).toString('hex')}: ${text} vs Node ${node}`)
    if (!parseIPv6Into(text, back, 0) || Buffer.compare(back, bytes) !== 0)
      t.fail(`${text} does not parse back`)
    const hexOnly = formatIPv6(bytes, 0, false)
    if (!parseIPv6Into(hexOnly, back, 0) || Buffer.compare(back, bytes) !== 0 || hexOnly.includes('.')) {
      t.fail(`${hexOnly} (hex only) does not parse back`)
    }
  }
  for (const bad of [
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '12345::',
    'g::',
    '1:2:3:4:5:6:7',
    '::1.2.3',
    '::01.2.3.4',
    '1:',
    ':1',
    '::ffff:1.2.3.4:5',
    '1.2.3.4::',
  ]) {
    t.notOk(parseIPv6Into(bad, back, 0), `${JSON.stringify(bad)} is refused`)
  }
  for (const good of [
    '::',
    '::1',
    '1::',
    '1:2:3:4:5:6:7::',
    '::2:3:4:5:6:7:8',
    '1:2:3:4:5:6:1.2.3.4',
    '::ffff:1.2.3.4',
    'FFFF::',
  ]) {
    t.ok(parseIPv6Into(good, back, 0), `${JSON.stringify(good)} is read`)
  }
})

t.test('formatHeader tells an operator what arrived', async (t) => {
  const sample = validSamples().find((s) => s.name.includes('every TLV'))!
  const header = parsed(sample.bytes)
  const text = formatHeader(header, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x1b[31m'))
  t.match(text, /^PROXY v2 PROXY stream IPv6 \(\d+ bytes\)\n/)
  t.match(text, /source {7}\[2001:db8::1\]:1\n/)
  t.match(text, /destination {2}\[2001:db8:0:1::ff\]:65535\n/)
  t.match(text, /TLV 0x01 ALPN \(2 bytes\) "h2"/)
  t.match(text, /TLV 0x02 AUTHORITY \(14 bytes\) "db\.example\.com"/)
  t.match(text, /TLV 0x05 UNIQUE_ID \(9 bytes\) "conn-0001"/)
  t.match(
    text,
    /TLV 0x20 SSL .*\n {6}client SSL\|CERT_CONN \(0x03\), verify 0 \(certificate verified\)\n {6}0x21 SSL_VERSION \(7 bytes\) "TLSv1\.3"\n {6}0x22 SSL_CN \(14 bytes\) "client\.example"/,
  )
  t.match(text, /TLV 0xe3 custom \(3 bytes\) 010203/)
  t.match(text, /TLV 0x03 CRC32C \(4 bytes\) 0x[0-9a-f]{8} \(verified\)/)
  t.match(text, /00000000 {2}47 45 54 20 2f 20 48 54 {2}54 50 2f 31 2e 31 0d 0a {2}\|GET \/ HTTP\/1\.1\.\.\|/)
  t.notMatch(text, /\x1b/, 'control bytes never reach the terminal')
  t.match(
    formatHeader(parsed(encodeV1(undefined, undefined)), Buffer.alloc(0)),
    /^PROXY v1 UNKNOWN \(15 bytes\)\n {2}addresses {4}none/,
  )
})

t.test('a parser is single-use', async (t) => {
  const parser = new ProxyHeaderParser()
  t.equal(
    refusal(() => parser.push(Buffer.from('X'))),
    'not-proxy',
  )
  t.equal(
    refusal(() => parser.push(Buffer.from('PROXY '))),
    'not-proxy',
    'the first refusal sticks',
  )
  const done = new ProxyHeaderParser()
  t.equal(done.push(encodeV2({ command: 'local', transport: 'stream' })).state, 'done')
  t.throws(() => done.push(Buffer.from('more')), /after the header was complete/)
  t.throws(() => new ProxyHeaderParser({ maxV2Length: 70000 }), { code: 'L4LB_ERR_CONFIG' })
})
