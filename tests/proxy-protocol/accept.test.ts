import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ProxyHeaderError } from '../../lib/errors.js'
import {
  type AcceptedProxy,
  acceptProxy,
  encodeV1,
  encodeV2,
  startInspector,
  uniqueIdTlv,
} from '../../lib/proxy-protocol/index.js'
import { canUseIPv6 } from '../helpers/index.js'
import { closed, listen, send } from './helpers.js'

const EVENTS = ['data', 'end', 'close', 'error', 'readable'] as const
/** Node adds listeners of its own to a socket; ours must leave the count where it found it. */
const baseline = new WeakMap<Socket, number[]>()
const listeners = (socket: Socket) => EVENTS.map((e) => socket.listenerCount(e))

/** A listener whose every connection goes through acceptProxy; outcomes in arrival order. */
async function proxyListener(host: string, options: Parameters<typeof acceptProxy>[1] = {}) {
  const outcomes: Array<Promise<AcceptedProxy>> = []
  const sockets: Socket[] = []
  const listening = await listen(host, (socket) => {
    baseline.set(socket, listeners(socket))
    sockets.push(socket)
    outcomes.push(acceptProxy(socket, options))
  })
  const next = async (): Promise<{ socket: Socket; outcome: Promise<AcceptedProxy> }> => {
    while (outcomes.length === 0) await sleep(2)
    return { socket: sockets.shift()!, outcome: outcomes.shift()! }
  }
  return { ...listening, next }
}

function readBytes(socket: Socket, count: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let have = 0
    const onData = (chunk: Buffer) => {
      chunks.push(chunk)
      have += chunk.length
      if (have >= count) {
        socket.removeListener('data', onData)
        socket.pause()
        resolve(Buffer.concat(chunks))
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.resume()
  })
}

const hosts = ['127.0.0.1', ...((await canUseIPv6()) ? ['::1'] : [])]

for (const host of hosts) {
  t.test(`over ${host}: the backend reads back the addresses of the real connection`, async (t) => {
    const server = await proxyListener(host)
    t.teardown(() => server.close())
    const encoders = {
      v1: (c: Socket) =>
        encodeV1(
          { address: c.localAddress!, port: c.localPort! },
          { address: c.remoteAddress!, port: c.remotePort! },
        ),
      v2: (c: Socket) =>
        encodeV2({
          command: 'proxy',
          transport: 'stream',
          src: { address: c.localAddress!, port: c.localPort! },
          dst: { address: c.remoteAddress!, port: c.remotePort! },
          tlvs: [uniqueIdTlv('id-1')],
          crc32c: true,
        }),
    }
    for (const [version, encode] of Object.entries(encoders)) {
      const client = await send(host, server.port, Buffer.alloc(0), false)
      client.write(Buffer.concat([encode(client), Buffer.from('first bytes|')]))
      const { socket, outcome } = await server.next()
      const { header, rest } = await outcome
      t.same(header.source, { address: client.localAddress, port: client.localPort }, `${version}: source`)
      t.same(
        header.destination,
        { address: client.remoteAddress, port: client.remotePort },
        `${version}: destination`,
      )
      t.equal(header.family, host === '::1' ? 6 : 4)
      if (version === 'v2') t.equal(header.uniqueId, 'id-1')
      t.ok(socket.isPaused(), 'the socket is handed back paused')
      t.same(listeners(socket), baseline.get(socket), 'no listener left behind')
      client.end('later bytes')
      const later = await readBytes(socket, 'later bytes'.length - (rest.length - 'first bytes|'.length))
      t.equal(
        Buffer.concat([rest, later]).toString(),
        'first bytes|later bytes',
        `${version}: no client byte lost`,
      )
      socket.destroy()
      await closed(client)
    }
  })
}

t.test('a header dribbled in small writes is still read, and its tail kept', async (t) => {
  const server = await proxyListener('127.0.0.1')
  t.teardown(() => server.close())
  const bytes = Buffer.concat([
    encodeV2({
      command: 'proxy',
      transport: 'stream',
      src: { address: '203.0.113.9', port: 4000 },
      dst: { address: '10.1.1.1', port: 5432 },
    }),
    Buffer.from('payload'),
  ])
  const client = await send('127.0.0.1', server.port, Buffer.alloc(0), false)
  client.setNoDelay(true)
  for (let at = 0; at < bytes.length; at += 5) {
    client.write(bytes.subarray(at, at + 5))
    await sleep(3)
  }
  const { socket, outcome } = await server.next()
  const { header, rest } = await outcome
  t.same(header.source, { address: '203.0.113.9', port: 4000 })
  const more = rest.length < 7 ? await readBytes(socket, 7 - rest.length) : Buffer.alloc(0)
  t.equal(Buffer.concat([rest, more]).toString(), 'payload')
  client.destroy()
})

t.test('refusals close the connection and say why', async (t) => {
  const server = await proxyListener('127.0.0.1', { timeoutMs: 150 })
  t.teardown(() => server.close())
  const cases: Array<[string, Buffer, boolean, string]> = [
    ['a client speaking HTTP directly', Buffer.from('GET / HTTP/1.1\r\n\r\n'), false, 'not-proxy'],
    ['a v1 line that never ends', Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`), false, 'v1-too-long'],
    ['half a header, then silence', Buffer.from('PROX'), false, 'timeout'],
    ['half a header, then FIN', Buffer.from('PROXY TCP4 1.2'), true, 'truncated'],
    ['a connect-and-close check', Buffer.alloc(0), true, 'closed-empty'],
  ]
  for (const [name, bytes, end, reason] of cases) {
    const client = await send('127.0.0.1', server.port, bytes, end)
    client.on('error', () => {}) // the server may reset us
    client.resume()
    const { socket, outcome } = await server.next()
    const err = await outcome.then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(err instanceof ProxyHeaderError, `${name}: a ProxyHeaderError`)
    t.equal((err as ProxyHeaderError).reason, reason, `${name}: ${reason}`)
    t.equal((err as ProxyHeaderError).code, 'L4LB_ERR_PROXY_HEADER')
    await closed(client)
    t.ok(socket.destroyed, `${name}: the server side is closed`)
  }
})

t.test('acceptProxy on a socket that is already gone rejects at once', async (t) => {
  const server = await listen('127.0.0.1', () => {})
  t.teardown(() => server.close())
  const client = await send('127.0.0.1', server.port, Buffer.alloc(0), false)
  while (server.accepted.length === 0) await sleep(2)
  const socket = server.accepted[0]!
  socket.destroy()
  const reason = await acceptProxy(socket).then(
    () => 'accepted',
    (err: ProxyHeaderError) => err.reason,
  )
  t.equal(reason, 'closed-empty')
  client.destroy()
})

t.test('proxy-inspect prints each header and what followed it, then hangs up', async (t) => {
  let printed = ''
  const inspector = await startInspector({
    host: '127.0.0.1',
    port: 0,
    out: { write: (s: string) => (printed += s) },
    waitMs: 2000,
  })
  t.teardown(() => inspector.close())
  const port = inspector.address().port
  const header = encodeV2({
    command: 'proxy',
    transport: 'stream',
    src: { address: '192.0.2.44', port: 61000 },
    dst: { address: '192.0.2.1', port: 5432 },
    tlvs: [uniqueIdTlv('abc')],
  })
  const client = await send('127.0.0.1', port, Buffer.concat([header, Buffer.alloc(80, 0x41)]), false)
  await closed(client)
  t.match(printed, /^connection from 127\.0\.0\.1:\d+\nPROXY v2 PROXY stream IPv4 \(34 bytes\)\n/)
  t.match(printed, /source {7}192\.0\.2\.44:61000/)
  t.match(printed, /TLV 0x05 UNIQUE_ID \(3 bytes\) "abc"/)
  t.match(printed, /first 64 bytes after the header:\n( {4}[0-9a-f]{8} {2}(41 ){8} (41 ){8} \|A{16}\|\n){4}$/)

  printed = ''
  const bad = await send('127.0.0.1', port, Buffer.from('hello\r\n'), false)
  bad.on('error', () => {})
  await closed(bad)
  t.match(printed, /refused: L4LB_ERR_PROXY_HEADER PROXY header not-proxy: first byte 0x68/)
})
