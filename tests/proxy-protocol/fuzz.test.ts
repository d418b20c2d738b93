import { type Socket, connect } from 'node:net'
import t from 'tap'
import { ProxyHeaderError } from '../../lib/errors.js'
import {
  type ProxyHeader,
  ProxyHeaderParser,
  type Tlv,
  V2_SIGNATURE,
  acceptProxy,
  encodeV1,
  encodeV2,
  uniqueIdTlv,
} from '../../lib/proxy-protocol/index.js'
import { formatIPv4, formatIPv6 } from '../../lib/proxy-protocol/ip.js'
import { gcFunction, listen, prng } from './helpers.js'

const CASES = 10_000
const CONCURRENCY = 48
const SEED = 0x5eed_1234

const random = prng(SEED)
const int = (n: number) => Math.floor(random() * n)
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)))
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!

function ipv4(): string {
  return formatIPv4(bytes(4))
}
function ipv6(): string {
  const b = new Uint8Array(16)
  // zero words are common in real addresses and exercise compression
  for (let w = 0; w < 8; w++) if (random() < 0.5) b.set([int(256), int(256)], w * 2)
  return formatIPv6(b)
}

interface Case {
  input: Buffer
  /** set for unmutated valid headers: what the parser must report */
  expect?: Partial<ProxyHeader>
}

function validCase(): Case {
  const port = () => int(65536)
  switch (int(5)) {
    case 0: {
      const src = { address: ipv4(), port: port() }
      const dst = { address: ipv4(), port: port() }
      return {
        input: encodeV1(src, dst, 4),
        expect: { version: 1, family: 4, source: src, destination: dst },
      }
    }
    case 1: {
      const src = { address: ipv6(), port: port() }
      const dst = { address: ipv6(), port: port() }
      if (src.address.includes('.') || dst.address.includes('.')) return validCase() // mapped: TCP4 on the wire
      return {
        input: encodeV1(src, dst, 6),
        expect: { version: 1, family: 6, source: src, destination: dst },
      }
    }
    case 2:
      return {
        input:
          random() < 0.5
            ? encodeV1(undefined, undefined)
            : Buffer.from(`PROXY UNKNOWN ${'x'.repeat(int(80))}\r\n`),
        expect: { version: 1, family: 0 },
      }
    default: {
      const tlvs: Tlv[] = []
      for (let n = int(4); n > 0; n--) {
        const type = pick([0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xe0, 0xea, 0xf1, 0x7f])
        tlvs.push(
          type === 0x05
            ? uniqueIdTlv('u'.repeat(1 + int(128)))
            : { type, value: bytes(int(type === 0x02 ? 200 : 60)) },
        )
      }
      const crc32c = random() < 0.4
      if (random() < 0.15) {
        return {
          input: encodeV2({ command: 'local', transport: 'stream', tlvs, crc32c }),
          expect: { version: 2, command: 'local', family: 0 },
        }
      }
      const v6 = random() < 0.5
      const src = { address: v6 ? ipv6() : ipv4(), port: port() }
      const dst = { address: v6 ? ipv6() : ipv4(), port: port() }
      const transport = random() < 0.7 ? 'stream' : 'dgram'
      const input = encodeV2({ command: 'proxy', transport, src, dst, tlvs, crc32c })
      const family = input[13]! >> 4 === 1 ? 4 : 6
      return {
        input,
        expect: { version: 2, command: 'proxy', transport, family, source: src, destination: dst },
      }
    }
  }
}

function mutate(input: Buffer): Buffer {
  let b = Buffer.from(input)
  for (let n = 1 + int(3); n > 0; n--) {
    const at = int(b.length + 1)
    switch (int(7)) {
      case 0:
        if (b.length) b[Math.min(at, b.length - 1)] = int(256)
        break
      case 1:
        if (b.length) b[Math.min(at, b.length - 1)]! ^= 1 << int(8)
        break
      case 2:
        b = b.subarray(0, at)
        break
      case 3:
        b = Buffer.concat([b.subarray(0, at), bytes(1 + int(3)), b.subarray(at)])
        break
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(4))])
        break
      case 5:
        if (b.length >= 16 && b[0] === 0x0d) b.writeUInt16BE(int(random() < 0.5 ? 300 : 65536), 14)
        break
      default:
        b = Buffer.concat([
          b.subarray(0, at),
          Buffer.from(pick(['\r', '\n', '\r\n', ' ', '0', ':'])),
          b.subarray(at),
        ])
    }
  }
  return b
}

function garbage(): Buffer {
  const prefix = pick([
    Buffer.alloc(0),
    Buffer.from('PROXY '),
    Buffer.from('PROXY TCP4 '),
    V2_SIGNATURE,
    Buffer.concat([V2_SIGNATURE, Buffer.from([0x21])]),
  ])
  return Buffer.concat([prefix, bytes(int(120))])
}

const cases: Case[] = []
for (let i = 0; i < CASES; i++) {
  const kind = i % 10
  const c = kind < 3 ? validCase() : kind < 8 ? { input: mutate(validCase().input) } : { input: garbage() }
  // client data after the header; it must come back untouched whenever a header is accepted
  cases.push({ ...c, input: Buffer.concat([c.input, bytes(int(25))]) })
}

type Outcome =
  { kind: 'done'; header: string; after: Buffer } | { kind: 'error'; reason: string } | { kind: 'need-more' }

/** Feeds `pieces` to a fresh parser; anything thrown that is not a ProxyHeaderError escapes. */
function run(pieces: Buffer[]): Outcome {
  const parser = new ProxyHeaderParser()
  try {
    for (let i = 0; i < pieces.length; i++) {
      const result = parser.push(pieces[i]!)
      if (result.state === 'done') {
        return {
          kind: 'done',
          header: JSON.stringify(result.header),
          after: Buffer.concat([result.rest, ...pieces.slice(i + 1)]),
        }
      }
    }
  } catch (err) {
    if (err instanceof ProxyHeaderError) return { kind: 'error', reason: err.reason }
    throw err
  }
  return { kind: 'need-more' }
}

function split(input: Buffer): Buffer[] {
  const cuts = Array.from({ length: int(4) }, () => int(input.length + 1)).sort((a, b) => a - b)
  const pieces: Buffer[] = []
  let from = 0
  for (const cut of cuts) {
    pieces.push(input.subarray(from, cut))
    from = cut
  }
  pieces.push(input.subarray(from))
  return pieces
}

const label = (o: Outcome) => (o.kind === 'error' ? o.reason : o.kind)
const gc = gcFunction()
/**
 * Heap in use once garbage is gone: collected until a reading stops going down (at most 5
 * rounds, a turn of the event loop between them so closed sockets' last callbacks have run), so
 * a busy box that delays finalisation does not read as a leak.
 */
const heap = async (): Promise<number> => {
  let least = Infinity
  for (let round = 0; round < 5; round++) {
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    gc()
    const used = process.memoryUsage().heapUsed
    if (used >= least) break
    least = used
  }
  return least
}

const oneShot: Outcome[] = []
const heapBefore = await heap()

t.test(`${CASES} random and mutated headers through the parser (seed ${SEED.toString(16)})`, async (t) => {
  const tally = new Map<string, number>()
  let unexpected = 0
  let splitMismatch = 0
  let lostBytes = 0
  let wrongHeader = 0
  for (const [i, c] of cases.entries()) {
    let whole: Outcome
    let pieces: Outcome
    try {
      whole = run([c.input])
      pieces = run(split(c.input))
    } catch (err) {
      if (unexpected++ === 0) t.fail(`case ${i} threw ${String(err)}: ${c.input.toString('hex')}`)
      continue
    }
    oneShot.push(whole)
    tally.set(label(whole), (tally.get(label(whole)) ?? 0) + 1)
    if (
      label(whole) !== label(pieces) ||
      (whole.kind === 'done' && pieces.kind === 'done' && whole.header !== pieces.header)
    ) {
      if (splitMismatch++ === 0)
        t.fail(`case ${i}: ${label(whole)} in one chunk but ${label(pieces)} when split`)
    }
    if (whole.kind === 'done') {
      const headerLength = (JSON.parse(whole.header) as ProxyHeader).byteLength
      const expected = c.input.subarray(headerLength)
      if (!whole.after.equals(expected) || (pieces.kind === 'done' && !pieces.after.equals(expected)))
        lostBytes++
    }
    if (c.expect) {
      const header = whole.kind === 'done' ? (JSON.parse(whole.header) as ProxyHeader) : undefined
      const ok =
        header !== undefined &&
        Object.entries(c.expect).every(
          ([key, value]) => JSON.stringify(header[key as keyof ProxyHeader]) === JSON.stringify(value),
        )
      if (!ok && wrongHeader++ === 0)
        t.fail(
          `case ${i}: valid header came back as ${label(whole)} ${whole.kind === 'done' ? whole.header : ''}`,
        )
    }
  }
  t.equal(unexpected, 0, 'nothing but ProxyHeaderError is ever thrown')
  t.equal(splitMismatch, 0, 'splitting the input never changes the outcome')
  t.equal(lostBytes, 0, 'bytes after an accepted header are returned exactly')
  t.equal(
    wrongHeader,
    0,
    `all ${cases.filter((c) => c.expect).length} unmutated headers decode to what was encoded`,
  )
  t.ok((tally.get('done') ?? 0) > CASES * 0.3, 'a good share is accepted')
  t.ok(tally.size >= 12, 'and the rest spread over many reasons')
  t.comment(`parser outcomes: ${JSON.stringify(Object.fromEntries([...tally].sort((a, b) => b[1] - a[1])))}`)
})

t.test(`the same ${CASES} inputs over real sockets through acceptProxy`, async (t) => {
  interface Pending {
    promise: Promise<Outcome>
    resolve: (o: Outcome) => void
  }
  const byPort = new Map<number, Pending>()
  const pending = (port: number): Pending => {
    let entry = byPort.get(port)
    if (!entry) {
      let resolve!: (o: Outcome) => void
      const promise = new Promise<Outcome>((r) => (resolve = r))
      entry = { promise, resolve }
      byPort.set(port, entry)
    }
    return entry
  }
  let serverSockets = 0
  const server = await listen('127.0.0.1', (socket) => {
    serverSockets++
    const entry = pending(socket.remotePort!)
    acceptProxy(socket, { timeoutMs: 10_000 }).then(
      ({ header, rest }) => {
        socket.destroy()
        entry.resolve({ kind: 'done', header: JSON.stringify(header), after: rest })
      },
      (err: unknown) =>
        entry.resolve(
          err instanceof ProxyHeaderError
            ? { kind: 'error', reason: err.reason }
            : { kind: 'error', reason: `NOT A ProxyHeaderError: ${String(err)}` },
        ),
    )
  })

  const clients: Socket[] = []
  const tally = new Map<string, number>()
  let mismatches = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const i = next++
      const input = cases[i]!.input
      const client = connect({ host: '127.0.0.1', port: server.port })
      clients.push(client)
      client.on('error', () => {}) // refused headers are answered with a reset or a close
      client.resume()
      await new Promise<void>((resolve) => client.once('connect', resolve))
      const entry = pending(client.localPort!)
      client.end(input)
      const got = await entry.promise
      byPort.delete(client.localPort!)
      await new Promise<void>((resolve) =>
        client.closed ? resolve() : client.once('close', () => resolve()),
      )
      const want = oneShot[i]!
      // over a socket, an input that is only the start of a header ends with the client's FIN
      const wanted =
        want.kind === 'need-more' ? (input.length === 0 ? 'closed-empty' : 'truncated') : label(want)
      tally.set(label(got), (tally.get(label(got)) ?? 0) + 1)
      const same =
        label(got) === wanted &&
        (got.kind !== 'done' ||
          (want.kind === 'done' &&
            got.header === want.header &&
            want.after.subarray(0, got.after.length).equals(got.after)))
      if (!same && mismatches++ === 0) t.fail(`case ${i}: socket gave ${label(got)}, parser ${wanted}`)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))

  t.equal(mismatches, 0, 'every socket outcome equals the parser outcome for the same bytes')
  t.equal(serverSockets, CASES, 'every connection reached acceptProxy')
  t.notOk(
    [...tally.keys()].some((k) => k.startsWith('NOT A')),
    'every rejection is a ProxyHeaderError',
  )
  t.equal(clients.filter((c) => !c.destroyed).length, 0, 'all client sockets are closed')
  t.equal(server.accepted.filter((s) => !s.destroyed).length, 0, 'all server sockets are closed')
  const open = await new Promise<number>((resolve, reject) =>
    server.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  )
  t.equal(open, 0, 'the listener holds no connection')
  await server.close()
  clients.length = 0
  server.accepted.length = 0
  t.comment(`socket outcomes: ${JSON.stringify(Object.fromEntries([...tally].sort((a, b) => b[1] - a[1])))}`)
})

t.test('memory comes back after the run', async (t) => {
  oneShot.length = 0
  // Every socket of the run is closed before measuring: until then its buffers are not garbage.
  for (let i = 0; i < 100 && process.getActiveResourcesInfo().includes('TCPSocketWrap'); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  const heapAfter = await heap()
  const mb = (n: number) => (n / 1048576).toFixed(1)
  t.comment(`heap used: ${mb(heapBefore)} MB before, ${mb(heapAfter)} MB after (inputs kept alive in both)`)
  // Per connection, loose on purpose: a leaked closure or read buffer per connection is ~1 KB.
  const perConnection = (heapAfter - heapBefore) / CASES
  t.ok(perConnection < 800, `heap grew ${mb(heapAfter - heapBefore)} MB over ${CASES} connections: ${perConnection.toFixed(0)} B each, under 800`)
})
