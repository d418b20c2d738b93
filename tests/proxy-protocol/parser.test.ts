import t from 'tap'
import { ProxyHeaderError } from '../../lib/errors.js'
import {
  PROXY_HEADER_REASONS,
  type ParseResult,
  type ProxyHeader,
  ProxyHeaderParser,
  encodeV2,
  parseProxyHeader,
  uniqueIdTlv,
} from '../../lib/proxy-protocol/index.js'
import { refusal, v2Bytes, validSamples } from './helpers.js'

// Client data after the header, with bytes that look like header pieces, to prove none is eaten.
const AFTER = Buffer.from('\r\n\r\n\0PROXY \x00\xff after the header', 'latin1')

interface Outcome {
  header: ProxyHeader
  /** rest of the `done` chunk plus every later chunk */
  after: Buffer
}

/** Feeds `pieces` in order, as a socket would deliver them. */
function feed(pieces: Buffer[]): Outcome {
  const parser = new ProxyHeaderParser()
  for (let i = 0; i < pieces.length; i++) {
    const result: ParseResult = parser.push(pieces[i]!)
    if (result.state === 'done')
      return { header: result.header, after: Buffer.concat([result.rest, ...pieces.slice(i + 1)]) }
  }
  throw new Error('header never completed')
}

t.test('a header split at any byte boundary parses the same, and the data after it is intact', async (t) => {
  for (const sample of validSamples()) {
    const whole = Buffer.concat([sample.bytes, AFTER])
    const once = feed([whole])
    t.same(once.after, AFTER, `${sample.name}: one chunk`)
    let failures = 0
    for (let cut = 0; cut <= whole.length; cut++) {
      const split = feed([whole.subarray(0, cut), whole.subarray(cut)])
      if (
        !Buffer.from(split.after).equals(AFTER) ||
        JSON.stringify(split.header) !== JSON.stringify(once.header)
      )
        failures++
    }
    t.equal(failures, 0, `${sample.name}: all ${whole.length + 1} two-way splits`)
    const bytes = [...whole].map((b) => Buffer.from([b]))
    const trickle = feed(bytes)
    t.same(trickle.header, once.header, `${sample.name}: one byte at a time`)
    t.same(trickle.after, AFTER, `${sample.name}: one byte at a time keeps the data`)
    const empty = feed([Buffer.alloc(0), whole.subarray(0, 3), Buffer.alloc(0), whole.subarray(3)])
    t.same(empty.after, AFTER, `${sample.name}: empty chunks are harmless`)
  }
})

t.test('a header in one chunk is decoded in place: rest is a view of that chunk', async (t) => {
  const chunk = Buffer.concat([encodeV2({ command: 'local', transport: 'stream' }), AFTER])
  const result = parseProxyHeader(chunk)
  if (result.state !== 'done') throw new Error('expected done')
  t.equal(result.rest.buffer, chunk.buffer)
  t.equal(result.rest.byteOffset, chunk.byteOffset + 16)
})

/** Feeds `bytes` one at a time; returns the index of the byte that was refused and why. */
function refusedAt(bytes: Buffer, maxV2Length?: number): { at: number; reason: string } {
  const parser = new ProxyHeaderParser(maxV2Length === undefined ? {} : { maxV2Length })
  for (let i = 0; i < bytes.length; i++) {
    try {
      if (parser.push(bytes.subarray(i, i + 1)).state === 'done') return { at: -1, reason: 'accepted' }
    } catch (err) {
      if (err instanceof ProxyHeaderError) return { at: i, reason: err.reason }
      throw err
    }
  }
  return { at: bytes.length, reason: 'need-more' }
}

const latin1 = (s: string) => Buffer.from(s, 'latin1')
const sig = '\r\n\r\n\0\r\nQUIT\n'

t.test('garbage is refused at the first byte that makes a header impossible', async (t) => {
  const cases: Array<[string, Buffer, number, string]> = [
    ['HTTP', latin1('GET / HTTP/1.1\r\n'), 0, 'not-proxy'],
    ['TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 0, 'not-proxy'],
    ['SSH banner', latin1('SSH-2.0-OpenSSH_9.6\r\n'), 0, 'not-proxy'],
    ['lower-case v1', latin1('proxy TCP4 '), 0, 'not-proxy'],
    ['PROXZ', latin1('PROXZ TCP4'), 4, 'bad-signature'],
    ['PROXY without space', latin1('PROXYTCP4'), 5, 'bad-signature'],
    ['TCP5', latin1('PROXY TCP5 1.2.3.4'), 9, 'v1-bad-protocol'],
    ['UDP4 (U could still start UNKNOWN)', latin1('PROXY UDP4 1.2.3.4'), 7, 'v1-bad-protocol'],
    ['UNKNOWNX', latin1('PROXY UNKNOWNX\r\n'), 13, 'v1-bad-protocol'],
    ['TCP4 with a letter', latin1('PROXY TCP4 1.2.3.a 5.6.7.8 1 2\r\n'), 17, 'v1-malformed'],
    ['TCP4 with IPv6', latin1('PROXY TCP4 ::1 ::1 1 2\r\n'), 11, 'v1-malformed'],
    ['two spaces', latin1('PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n'), 19, 'v1-malformed'],
    ['space after the protocol twice', latin1('PROXY TCP6  ::1'), 11, 'v1-malformed'],
    ['letters in a TCP6 port', latin1('PROXY TCP6 ::1 ::1 a 2\r\n'), 19, 'v1-malformed'],
    ['leading zero in a port', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n'), 28, 'v1-bad-port'],
    ['six-digit port', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n'), 32, 'v1-bad-port'],
    ['fields missing', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), 28, 'v1-malformed'],
    ['five fields', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n'), 30, 'v1-malformed'],
    ['bare LF', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), 30, 'v1-malformed'],
    ['CR without LF', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'), 31, 'v1-malformed'],
    ['control byte after UNKNOWN', latin1('PROXY UNKNOWN \x01\r\n'), 14, 'v1-malformed'],
    ['v2 signature broken at its NUL', latin1('\r\n\r\n\x01'), 4, 'bad-signature'],
    ['v2 signature broken at QUIT', latin1('\r\n\r\n\0\r\nQUIZ'), 10, 'bad-signature'],
    ['v2 version 1', latin1(sig + '\x11\x11\x00\x0c'), 12, 'v2-bad-version'],
    ['v2 version 3', latin1(sig + '\x31\x11\x00\x0c'), 12, 'v2-bad-version'],
    ['v2 command 2', latin1(sig + '\x22\x11\x00\x0c'), 12, 'v2-bad-command'],
    ['v2 family 4', latin1(sig + '\x21\x41\x00\x0c'), 13, 'v2-bad-family'],
    ['v2 transport 3', latin1(sig + '\x21\x13\x00\x0c'), 13, 'v2-bad-transport'],
    ['v2 IPv4 shorter than its addresses', latin1(sig + '\x21\x11\x00\x0b'), 15, 'v2-truncated-address'],
    ['v2 IPv6 shorter than its addresses', latin1(sig + '\x21\x21\x00\x23'), 15, 'v2-truncated-address'],
    ['v2 UNIX shorter than its addresses', latin1(sig + '\x21\x31\x00\xd7'), 15, 'v2-truncated-address'],
  ]
  for (const [name, bytes, at, reason] of cases) {
    t.same(refusedAt(bytes), { at, reason }, name)
  }
})

t.test('refusals that need the complete header', async (t) => {
  const v1 = (line: string) => refusal(() => parseProxyHeader(latin1(line)))
  t.equal(v1('PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n'), 'v1-bad-address', 'octet above 255')
  t.equal(v1('PROXY TCP4 01.1.1.1 5.6.7.8 1 2\r\n'), 'v1-bad-address', 'leading zero in an octet')
  t.equal(v1('PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n'), 'v1-bad-address', 'three octets')
  t.equal(v1('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), 'v1-bad-port', 'port above 65535')
  t.equal(v1('PROXY TCP6 1:2 ::1 1 2\r\n'), 'v1-bad-address', 'short IPv6')
  t.equal(v1('PROXY TCP6 1.2.3.4 ::1 1 2\r\n'), 'v1-bad-address', 'IPv4 on a TCP6 line')
  t.equal(v1('PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n'), 'none', 'ports 0 and 65535 are fine')
  t.equal(v1('PROXY UNKNOWN anything at all 1 2 3\r\n'), 'none', 'UNKNOWN ignores the rest of the line')

  const tcp4 = [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2]
  const v2 = (body: number[]) => refusal(() => parseProxyHeader(v2Bytes(0x21, 0x11, body)))
  t.equal(v2([...tcp4, 0x05, 0x00]), 'v2-bad-tlv', 'two stray bytes after the addresses')
  t.equal(v2([...tcp4, 0x05, 0x00, 0x03, 0x61]), 'v2-bad-tlv', 'a TLV longer than the header')
  t.equal(v2([...tcp4, 0x03, 0x00, 0x02, 0x00, 0x00]), 'v2-bad-tlv', 'a 2-byte CRC32C')
  t.equal(
    v2([...tcp4, 0x05, 0x00, 0x81, ...new Array<number>(129).fill(0x61)]),
    'v2-bad-tlv',
    'UNIQUE_ID of 129 bytes',
  )
  t.equal(v2([...tcp4, 0x04, 0x00, 0x00]), 'none', 'an empty NOOP')
  const doubled = encodeV2({ command: 'local', transport: 'stream', tlvs: [uniqueIdTlv('a')], crc32c: true })
  const twice = Buffer.concat([doubled, doubled.subarray(doubled.length - 7)])
  twice.writeUInt16BE(twice.length - 16, 14)
  t.equal(
    refusal(() => parseProxyHeader(twice)),
    'v2-bad-tlv',
    'two CRC32C TLVs',
  )
})

t.test('length limits', async (t) => {
  const line = (length: number) => latin1(`PROXY UNKNOWN ${'x'.repeat(length - 16)}\r\n`)
  t.equal(line(107).length, 107)
  t.same(refusedAt(line(107)), { at: -1, reason: 'accepted' }, 'a 107-byte v1 line is the longest accepted')
  t.same(
    refusedAt(line(108)),
    { at: 106, reason: 'v1-too-long' },
    'a 108-byte line is refused at its 107th byte',
  )
  t.same(
    refusedAt(latin1(`PROXY UNKNOWN ${'x'.repeat(500)}`)),
    { at: 106, reason: 'v1-too-long' },
    'without waiting for more',
  )
  t.same(
    refusedAt(latin1('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535 \r\n')),
    { at: 54, reason: 'v1-malformed' },
    'TCP4 cannot grow past its 56-byte maximum',
  )
  // a LOCAL header whose body is one NOOP TLV filling exactly `length` bytes
  const noops = (length: number) =>
    v2Bytes(0x20, 0x00, [
      0x04,
      (length - 3) >> 8,
      (length - 3) & 0xff,
      ...new Array<number>(length - 3).fill(0),
    ])
  t.same(refusedAt(noops(99), 99), { at: -1, reason: 'accepted' }, 'length equal to maxV2Length is accepted')
  t.same(
    refusedAt(noops(100), 99),
    { at: 15, reason: 'v2-too-long' },
    'one above the cap: refused at the length field',
  )
  t.same(refusedAt(noops(4096)), { at: -1, reason: 'accepted' }, '4096 with the default cap')
  t.same(refusedAt(noops(4097)), { at: 15, reason: 'v2-too-long' }, '4097 with the default cap')
  t.same(refusedAt(v2Bytes(0x20, 0x00, []).fill(0xff, 14)), { at: 15, reason: 'v2-too-long' }, 'length 65535')
})

t.test('every reason a refusal can carry is in the published list', async (t) => {
  const seen = [
    'not-proxy',
    'bad-signature',
    'v1-bad-protocol',
    'v1-too-long',
    'v1-malformed',
    'v1-bad-address',
    'v1-bad-port',
    'v2-bad-version',
    'v2-bad-command',
    'v2-bad-family',
    'v2-bad-transport',
    'v2-too-long',
    'v2-truncated-address',
    'v2-bad-tlv',
    'bad-crc32c',
    'timeout',
    'closed-empty',
    'truncated',
  ]
  for (const reason of seen) t.ok((PROXY_HEADER_REASONS as readonly string[]).includes(reason), reason)
})
