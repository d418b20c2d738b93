import t from 'tap'
import { ProxyHeaderError } from '../../lib/errors.js'
import { datagramHeader, parseProxyHeader, uniqueIdTlv } from '../../lib/proxy-protocol/index.js'

function decode(bytes: Buffer) {
  const result = parseProxyHeader(bytes)
  if (result.state !== 'done') throw new Error('expected a complete header')
  return result
}

t.test('a UDP service prepends a v2 PROXY DGRAM header that decodes to the client and listener', async (t) => {
  const header = datagramHeader({ address: '198.51.100.7', port: 27005 }, { address: '10.0.0.1', port: 27015 }, 'v2')
  const payload = Buffer.from('\xff\xff\xff\xffTSource Engine Query\0', 'latin1')
  const { header: h, rest } = decode(Buffer.concat([header, payload]))
  t.equal(h.version, 2)
  t.equal(h.command, 'proxy')
  t.equal(h.transport, 'dgram')
  t.equal(h.family, 4)
  t.same(h.source, { address: '198.51.100.7', port: 27005 })
  t.same(h.destination, { address: '10.0.0.1', port: 27015 })
  t.same(rest, payload, 'the datagram payload follows the header untouched')
  t.equal(header[13], 0x12, 'AF_INET + DGRAM')
})

t.test('IPv6 clients get an AF_INET6 DGRAM header; TLVs and CRC32C are optional', async (t) => {
  const header = datagramHeader({ address: '2001:db8::7', port: 5000 }, { address: '::1', port: 53 }, 'v2', {
    tlvs: [uniqueIdTlv('abc')],
    crc32c: true,
  })
  const { header: h } = decode(header)
  t.equal(h.family, 6)
  t.equal(h.transport, 'dgram')
  t.same(h.source, { address: '2001:db8::7', port: 5000 })
  t.equal(h.uniqueId, 'abc')
  t.equal(header[13], 0x22, 'AF_INET6 + DGRAM')
})

t.test('v1 has no datagram form: asking for it throws a ProxyHeaderError', async (t) => {
  t.throws(() => datagramHeader({ address: '127.0.0.1', port: 1 }, { address: '127.0.0.1', port: 2 }, 'v1'), ProxyHeaderError)
})
