import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net'
import { ProxyHeaderError } from '../../lib/errors.js'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import {
  PP2_TYPE_ALPN,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_NETNS,
  PP2_TYPE_NOOP,
  PP2_TYPE_SSL,
  V2_SIGNATURE,
  type ProxyHeader,
  type Tlv,
  encodeV1,
  encodeV2,
  uniqueIdTlv,
} from '../../lib/proxy-protocol/index.js'

/** mulberry32: a tiny seeded PRNG, so every fuzz run sees the same inputs. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** global.gc without --expose-gc: the flag can be turned on at run time for a fresh context. */
export function gcFunction(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc
  if (existing) return existing
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/** The bytes of a v2 header written by hand from the spec, for vectors the encoder must match. */
export function v2Bytes(verCmd: number, fam: number, body: number[]): Buffer {
  return Buffer.concat([
    V2_SIGNATURE,
    Buffer.from([verCmd, fam, body.length >> 8, body.length & 0xff, ...body]),
  ])
}

export const SSL_TLV: Tlv = {
  type: PP2_TYPE_SSL,
  // client = SSL|CERT_CONN, verify = 0, SSL_VERSION "TLSv1.3", SSL_CN "client.example"
  value: Buffer.concat([
    Buffer.from([0x03, 0, 0, 0, 0]),
    Buffer.from([0x21, 0, 7]),
    Buffer.from('TLSv1.3'),
    Buffer.from([0x22, 0, 14]),
    Buffer.from('client.example'),
  ]),
}

export interface Sample {
  name: string
  bytes: Buffer
  expect: Partial<ProxyHeader>
}

/** Valid headers of every shape the parser must accept, with what it must report. */
export function validSamples(): Sample[] {
  const v4s = { address: '192.0.2.1', port: 56324 }
  const v4d = { address: '198.51.100.11', port: 443 }
  const v6s = { address: '2001:db8::1', port: 1 }
  const v6d = { address: '2001:db8:0:1::ff', port: 65535 }
  const tlvs: Tlv[] = [
    { type: PP2_TYPE_ALPN, value: Buffer.from('h2') },
    { type: PP2_TYPE_AUTHORITY, value: Buffer.from('db.example.com') },
    { type: PP2_TYPE_NOOP, value: Buffer.alloc(3) },
    uniqueIdTlv('conn-0001'),
    SSL_TLV,
    { type: PP2_TYPE_NETNS, value: Buffer.from('blue') },
    { type: 0xe3, value: Buffer.from([1, 2, 3]) },
  ]
  const addressed = (family: 4 | 6, transport: 'stream' | 'dgram', s: typeof v4s, d: typeof v4s) => ({
    command: 'proxy' as const,
    transport,
    family,
    source: s,
    destination: d,
  })
  return [
    {
      name: 'v1 TCP4',
      bytes: encodeV1(v4s, v4d, 4),
      expect: { version: 1, ...addressed(4, 'stream', v4s, v4d) },
    },
    {
      name: 'v1 TCP6',
      bytes: encodeV1(v6s, v6d, 6),
      expect: { version: 1, ...addressed(6, 'stream', v6s, v6d) },
    },
    {
      name: 'v1 UNKNOWN',
      bytes: encodeV1(undefined, undefined),
      expect: { version: 1, family: 0, transport: 'unspec' },
    },
    {
      name: 'v1 UNKNOWN, 107-byte worst case',
      bytes: Buffer.from(`PROXY UNKNOWN ${'f'.repeat(39)} ${'f'.repeat(39)} 65535 65535\r\n`),
      expect: { version: 1, family: 0 },
    },
    {
      name: 'v1 TCP4 56-byte worst case',
      bytes: Buffer.from('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n'),
      expect: { version: 1, family: 4 },
    },
    {
      name: 'v2 TCP over IPv4',
      bytes: encodeV2({ command: 'proxy', transport: 'stream', src: v4s, dst: v4d }),
      expect: { version: 2, ...addressed(4, 'stream', v4s, v4d), tlvs: [] },
    },
    {
      name: 'v2 UDP over IPv4',
      bytes: encodeV2({ command: 'proxy', transport: 'dgram', src: v4s, dst: v4d }),
      expect: { version: 2, ...addressed(4, 'dgram', v4s, v4d) },
    },
    {
      name: 'v2 TCP over IPv6 with every TLV and CRC32C',
      bytes: encodeV2({ command: 'proxy', transport: 'stream', src: v6s, dst: v6d, tlvs, crc32c: true }),
      expect: {
        version: 2,
        ...addressed(6, 'stream', v6s, v6d),
        uniqueId: 'conn-0001',
        authority: 'db.example.com',
      },
    },
    {
      name: 'v2 LOCAL',
      bytes: encodeV2({ command: 'local', transport: 'stream' }),
      expect: { version: 2, command: 'local', family: 0 },
    },
    {
      name: 'v2 LOCAL with UNIQUE_ID and CRC32C',
      bytes: encodeV2({ command: 'local', transport: 'stream', tlvs: [uniqueIdTlv('hc')], crc32c: true }),
      expect: { version: 2, command: 'local', family: 0, uniqueId: 'hc' },
    },
    {
      name: 'v2 PROXY over AF_UNIX (addresses ignored)',
      bytes: v2Bytes(0x21, 0x31, new Array<number>(216).fill(0x61)),
      expect: { version: 2, command: 'proxy', family: 0, transport: 'stream' },
    },
    {
      name: 'v2 PROXY AF_UNSPEC',
      bytes: v2Bytes(0x21, 0x00, []),
      expect: { version: 2, command: 'proxy', family: 0, transport: 'unspec' },
    },
  ]
}

export interface Listening {
  server: Server
  port: number
  /** Every server-side socket accepted so far. */
  accepted: Socket[]
  close(): Promise<void>
}

/** A pauseOnConnect listener like l4lb's own, handing each socket to `onSocket`. */
export function listen(host: string, onSocket: (socket: Socket) => void): Promise<Listening> {
  const accepted: Socket[] = []
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    accepted.push(socket)
    onSocket(socket)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => {
      resolve({
        server,
        port: (server.address() as AddressInfo).port,
        accepted,
        close: () =>
          new Promise<void>((done) => {
            for (const s of accepted) s.destroy()
            server.close(() => done())
          }),
      })
    })
  })
}

/** Connects, writes `bytes` (optionally ending), and resolves the connected client socket. */
export function send(host: string, port: number, bytes: Buffer, end: boolean): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const client = connect({ host, port }, () => {
      if (end) client.end(bytes)
      else client.write(bytes)
      resolve(client)
    })
    client.once('error', reject)
  })
}

export function closed(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve()
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

/** The `reason` of the ProxyHeaderError `fn` throws, or 'none'; any other error propagates. */
export function refusal(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ProxyHeaderError) return err.reason
    throw err
  }
  return 'none'
}
