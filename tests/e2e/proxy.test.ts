/**
 * PROXY protocol through a real bin/l4lb on loopback: what a backend behind us learns about the
 * client (send), what we believe from an upstream balancer and from whom (accept), and how bad
 * headers end (closed, logged, and the balancer keeps serving).
 */
import t, { type Test } from 'tap'
import type { Socket } from 'node:net'
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { encodeV1, encodeV2, type Tlv } from '../../lib/proxy-protocol/index.js'
import {
  BIN, EchoBackend, canUseIPv6, childEnv, connect, eventually, nodeCommand, readAll, readLine, runL4lb, spawnL4lb, within, type LogLine,
} from '../helpers/index.js'
import { ProxyBackend } from '../helpers/proxy.js'
import { PLANES, planeArgs, planeSkip } from '../helpers/planes.js'

async function proxyBackend(t: Test, name = 'pp', host = '127.0.0.1'): Promise<ProxyBackend> {
  const b = await new ProxyBackend(name).start(host)
  t.teardown(() => b.stop())
  return b
}

async function l4lb(t: Test, args: string[], listenAt = '127.0.0.1:0') {
  const p = await spawnL4lb(['-l', listenAt, '--check', 'none', ...args])
  t.teardown(() => p.stop())
  return p
}

const closedLine = (id?: string) => (l: LogLine): boolean => l.msg === 'connection closed' && (id === undefined || l.id === id)

// Sending headers: on both data planes (accepting them stays on the node plane).
for (const plane of PLANES) {
  const skip = planeSkip(plane)
  for (const version of ['v1', 'v2'] as const) {
    t.test(`${plane} plane, ${version}: the backend sees the client's real address, the header first, the client's bytes intact`, { skip }, async (t) => {
      const backend = await proxyBackend(t)
      const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', version, ...planeArgs(plane)])
      const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.7')
      const clientPort = client.localPort
      t.teardown(() => client.destroy())
      // The backend answers before the client has sent anything: no deadlock on server-first protocols.
      const greeting = await readLine(client)
      t.equal(greeting, `pp 127.5.0.7 ${clientPort}`)
      const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 0xff))
      client.end(payload)
      const { data } = await within(5000, 'echo', readAll(client))
      t.same(data, payload, 'every client byte came back, in order')
      t.same(backend.seen[0]!.data, payload, 'the backend got exactly the client bytes after the header')
      const header = backend.seen[0]!.header
      t.equal(header.version, version === 'v1' ? 1 : 2)
      t.same(header.destination, { address: '127.0.0.1', port: lb.ports[0] }, 'destination is the listener')
      const line = await lb.waitForLog('connection closed', closedLine())
      t.equal(line.client, `127.5.0.7:${clientPort}`)
      t.equal(line.bytesIn, payload.length)
      t.type(line.id, 'string')
      if (version === 'v2') t.equal(header.uniqueId, line.id, 'UNIQUE_ID in the header is the id in the log line')
    })
  }

  t.test(`${plane} plane, IPv6: v1 and v2 carry [::1] and its port`, { skip }, async (t) => {
    if (!(await canUseIPv6())) return t.plan(0, 'no IPv6 loopback here')
    for (const version of ['v1', 'v2'] as const) {
      const backend = await proxyBackend(t, 'six', '::1')
      const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', version, ...planeArgs(plane)], '[::1]:0')
      const client = await connect(lb.ports[0]!, '::1')
      const clientPort = client.localPort
      t.teardown(() => client.destroy())
      t.equal(await readLine(client), `six ::1 ${clientPort}`, version)
      t.same(backend.seen[0]!.header.destination, { address: '::1', port: lb.ports[0] })
      t.equal(backend.seen[0]!.header.family, 6)
      client.end()
    }
  })

  t.test(`${plane} plane: --proxy-v2-crc32c adds a CRC32C TLV the backend verifies`, { skip }, async (t) => {
    const backend = await proxyBackend(t)
    const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', 'v2', '--proxy-v2-crc32c', ...planeArgs(plane)])
    const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.8')
    t.teardown(() => client.destroy())
    t.match(await readLine(client), /^pp 127\.5\.0\.8 /)
    // the parser refuses a header whose checksum is wrong, so arriving here means it verified
    t.ok(backend.seen[0]!.header.tlvs.some((tlv) => tlv.type === 0x03), 'CRC32C TLV present')
  })
}

/** A header an upstream balancer would send for a client at 203.0.113.9. */
function upstreamHeader(srcIp = '203.0.113.9', srcPort = 40000, tlvs: Tlv[] = []): Buffer {
  return encodeV2({ command: 'proxy', transport: 'stream', src: { address: srcIp, port: srcPort }, dst: { address: '192.0.2.1', port: 443 }, tlvs })
}

t.test('accept-proxy from a trusted source: the header\'s client is logged, hashed and sent onward', async (t) => {
  const backend = await proxyBackend(t)
  const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', 'v2', '--accept-proxy', '127.5.0.0/16'])
  const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.7')
  const clientPort = client.localPort
  t.teardown(() => client.destroy())
  const authority = { type: 0x02, value: Buffer.from('db.example.com') }
  const custom = { type: 0xe0, value: Buffer.from('tenant-7') }
  // header and first bytes in one write: the bytes after it must reach the backend exactly once
  client.write(Buffer.concat([upstreamHeader('203.0.113.9', 40000, [authority, custom]), Buffer.from('first bytes')]))
  t.equal(await readLine(client), 'pp 203.0.113.9 40000')
  client.end()
  await within(5000, 'end', readAll(client))
  const seen = backend.seen[0]!
  t.equal(seen.data.toString(), 'first bytes')
  t.equal(seen.header.authority, 'db.example.com', 'AUTHORITY goes onward')
  t.notOk(seen.header.tlvs.some((tlv) => tlv.type === 0xe0), 'unknown TLVs stay behind without --proxy-forward-tlvs')
  const line = await lb.waitForLog('connection closed', closedLine())
  t.equal(line.client, '203.0.113.9:40000')
  t.equal(line.via, `127.5.0.7:${clientPort}`)
  t.equal(line.bytesIn, 'first bytes'.length, 'bytesIn counts the client\'s bytes, not the upstream\'s header')
})

t.test('accept-proxy: the hash key is the header\'s client, whichever upstream it came through', async (t) => {
  const backends = await Promise.all(['a', 'b', 'c', 'd'].map((n) => proxyBackend(t, n)))
  const lb = await l4lb(t, [...backends.flatMap((b) => ['-b', b.address]), '--proxy-protocol', 'v1', '--accept-proxy', '127.5.0.0/16'])
  async function via(upstream: string, claimed: string): Promise<string> {
    const client = await connect(lb.ports[0]!, '127.0.0.1', upstream)
    try {
      client.write(encodeV1({ address: claimed, port: 1234 }, { address: '192.0.2.1', port: 5432 }))
      const line = await readLine(client)
      t.equal(line.split(' ')[1], claimed)
      return line.split(' ')[0]!
    } finally {
      client.destroy()
    }
  }
  const same = new Set<string>()
  for (let i = 1; i <= 12; i++) same.add(await via(`127.5.${i}.1`, '203.0.113.9'))
  t.equal(same.size, 1, `203.0.113.9 through 12 upstreams always lands on ${[...same].join(',')}`)
  const spread = new Set<string>()
  for (let i = 1; i <= 40; i++) spread.add(await via('127.5.0.7', `198.51.100.${i}`))
  t.ok(spread.size > 1, `40 claimed clients through one upstream spread over ${spread.size} backends`)
})

t.test('--proxy-forward-tlvs passes unknown TLVs of an accepted header on', async (t) => {
  const backend = await proxyBackend(t)
  const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', 'v2', '--accept-proxy', '127.5.0.0/16', '--proxy-forward-tlvs'])
  const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.9')
  t.teardown(() => client.destroy())
  client.write(upstreamHeader('203.0.113.10', 1, [{ type: 0xe0, value: Buffer.from('tenant-7') }, { type: 0x05, value: Buffer.from('their-id') }]))
  t.equal(await readLine(client), 'pp 203.0.113.10 1')
  const tlvs = backend.seen[0]!.header.tlvs
  t.same(tlvs.find((x) => x.type === 0xe0)?.value.toString(), 'tenant-7')
  t.not(backend.seen[0]!.header.uniqueId, 'their-id', 'the UNIQUE_ID is ours, not the upstream\'s')
})

t.test('v2 LOCAL and v1 UNKNOWN from a trusted source: the connection\'s own address is used', async (t) => {
  const backend = await proxyBackend(t)
  const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', 'v2', '--accept-proxy', '127.5.0.0/16'])
  for (const header of [encodeV2({ command: 'local', transport: 'stream' }), Buffer.from('PROXY UNKNOWN\r\n')]) {
    const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.10')
    const clientPort = client.localPort
    t.equal(await readLine(client.end(header) as Socket), `pp 127.5.0.10 ${clientPort}`)
    client.destroy()
  }
})

t.test('a header from an untrusted source is not believed: forwarded as data, or refused with --accept-proxy-strict', async (t) => {
  const echo = await new EchoBackend('plain').start()
  t.teardown(() => echo.stop())
  const lb = await l4lb(t, ['-b', echo.address, '--accept-proxy', '127.5.0.0/16'])
  const forged = upstreamHeader('203.0.113.9')
  const client = await connect(lb.ports[0]!, '127.0.0.1', '127.6.0.1')
  const clientPort = client.localPort
  client.end(forged)
  const { data } = await within(5000, 'echo', readAll(client))
  t.same(data, Buffer.concat([Buffer.from('plain\n'), forged]), 'the header bytes reached the backend as plain data')
  const line = await lb.waitForLog('connection closed', closedLine())
  t.equal(line.client, `127.6.0.1:${clientPort}`)
  t.equal(line.via, undefined)

  const strict = await l4lb(t, ['-b', echo.address, '--accept-proxy', '127.5.0.0/16', '--accept-proxy-strict'])
  const before = echo.accepted
  const refused = await connect(strict.ports[0]!, '127.0.0.1', '127.6.0.1')
  const refusedPort = refused.localPort
  refused.write(forged)
  const result = await within(5000, 'close', readAll(refused))
  t.equal(result.data.length, 0, 'closed without a byte')
  t.equal(echo.accepted, before, 'the backend never saw it')
  const refusal = await strict.waitForLog('refusal', (l) => l.reason === 'proxy-untrusted')
  t.equal(refusal.client, `127.6.0.1:${refusedPort}`)
  // a trusted source still gets through in strict mode
  const trusted = await connect(strict.ports[0]!, '127.0.0.1', '127.5.0.3')
  trusted.write(upstreamHeader('203.0.113.11'))
  t.equal(await readLine(trusted), 'plain')
  trusted.destroy()
})

t.test('malformed, oversized and slow headers close the connection with a logged reason; l4lb keeps serving', async (t) => {
  const backend = await proxyBackend(t)
  const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', 'v1', '--accept-proxy', '127.5.0.0/16', '--accept-proxy-timeout', '300ms'])
  const oversized = Buffer.from(upstreamHeader())
  oversized.writeUInt16BE(5000, 14)
  const cases: Array<{ name: string; bytes: Buffer; label: string | RegExp }> = [
    { name: 'malformed v1', bytes: Buffer.from('PROXY TCP4 203.0.113.x 192.0.2.1 1 2\r\nhello'), label: /^v1-/ },
    { name: 'not PROXY at all', bytes: Buffer.from('GET / HTTP/1.1\r\n\r\n'), label: /^(not-proxy|bad-signature)$/ },
    { name: 'oversized v2', bytes: Buffer.concat([oversized, Buffer.alloc(64)]), label: 'v2-too-long' },
    { name: 'slow (half a header, then silence)', bytes: upstreamHeader().subarray(0, 20), label: 'timeout' },
  ]
  for (const c of cases) {
    const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.20')
    const clientPort = client.localPort
    const started = Date.now()
    client.write(c.bytes)
    const result = await within(3000, `${c.name}: close`, readAll(client))
    t.equal(result.data.length, 0, `${c.name}: closed without a byte`)
    const line = await lb.waitForLog(c.name, (l) => l.msg === 'connection closed' && l.reason === 'proxy-header' && l.client === `127.5.0.20:${clientPort}`)
    t.match(line.proxyError, c.label, `${c.name}: proxyError ${String(line.proxyError)}`)
    if (c.label === 'timeout') t.ok(Date.now() - started < 2000, `timed out after ${Date.now() - started}ms`)
  }
  // a header cut short by the client's FIN
  const cut = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.21')
  cut.end(upstreamHeader().subarray(0, 10))
  await within(3000, 'truncated close', readAll(cut))
  const truncated = await lb.waitForLog('truncated', (l) => l.reason === 'proxy-header' && l.proxyError === 'truncated')
  t.equal(truncated.backend, null)
  t.equal(backend.seen.length, 0, 'no bad header ever reached a backend')
  // and the balancer is fine
  const good = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.22')
  good.write(upstreamHeader('203.0.113.12', 7))
  t.equal(await readLine(good), 'pp 203.0.113.12 7')
  good.destroy()
  t.equal(lb.proc.exitCode, null, 'still running')
})

t.test('a header split across many small reads is still parsed', async (t) => {
  const backend = await proxyBackend(t)
  const lb = await l4lb(t, ['-b', backend.address, '--proxy-protocol', 'v2', '--accept-proxy', '127.5.0.0/16'])
  const client = await connect(lb.ports[0]!, '127.0.0.1', '127.5.0.30')
  t.teardown(() => client.destroy())
  client.setNoDelay(true)
  const bytes = Buffer.concat([upstreamHeader('2001:db8::9', 8443), Buffer.from('after')])
  for (let i = 0; i < bytes.length; i += 7) {
    client.write(bytes.subarray(i, i + 7))
    await sleep(5)
  }
  t.equal(await readLine(client), 'pp 2001:db8::9 8443')
  // Bytes forwarded twice would never read as exactly 'after'.
  await eventually('the bytes after the header', () => backend.seen[0]?.data.toString() === 'after', 3000, 10)
  t.equal(backend.seen[0]!.data.toString(), 'after', 'the bytes after the header arrived exactly once')
})

t.test('proxy-inspect prints a decoded header and the bytes after it', async (t) => {
  const argv = nodeCommand(BIN, 'proxy-inspect', '-l', '127.0.0.1:0')
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() })
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  const waitFor = (re: RegExp, what: string): Promise<RegExpExecArray> => eventually(what, () => re.exec(out), 5000)
  const port = Number((await waitFor(/listening on 127\.0\.0\.1:(\d+)/, 'listening line'))[1])
  const client = await connect(port)
  client.write(Buffer.concat([upstreamHeader('203.0.113.9', 51000, [{ type: 0x02, value: Buffer.from('example.com') }]), Buffer.from('GET / HTTP/1.0\r\n\r\n')]))
  await waitFor(/first \d+ bytes after the header[\s\S]*\n\S*$/m, 'the report')
  client.destroy()
  t.match(out, /PROXY v2 PROXY stream IPv4/)
  t.match(out, /source\s+203\.0\.113\.9:51000/)
  t.match(out, /destination\s+192\.0\.2\.1:443/)
  t.match(out, /AUTHORITY/)
  t.match(out, /example\.com/)
  t.match(out, /GET \//)
  proc.kill('SIGINT')
  const code = await within(5000, 'exit', new Promise((resolve) => proc.once('exit', (c) => resolve(c))))
  t.equal(code, 0, 'Ctrl-C stops it cleanly')
})

t.test('bad PROXY flags exit 2 with one line naming the flag and the value', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--accept-proxy-strict'], /^l4lb: --accept-proxy-strict true: needs acceptProxy/],
    [['--accept-proxy', '10.0.0.0/8', '--accept-proxy-timeout', '5'], /^l4lb: --accept-proxy-timeout "5": /],
    [['--accept-proxy', '10.0.0.0/8', '--accept-proxy-max-length', '100'], /^l4lb: --accept-proxy-max-length "100": must be a whole number from 216 to 65535/],
    [['--proxy-v2-crc32c'], /^l4lb: --proxy-v2-crc32c true: only applies with proxyProtocol v2/],
    [['--proxy-protocol', 'v2', '--proxy-forward-tlvs'], /^l4lb: --proxy-forward-tlvs true: only applies/],
  ]
  for (const [args, message] of cases) {
    const r = await runL4lb(['-l', '127.0.0.1:0', '-b', '127.0.0.1:9', ...args])
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, message)
    t.equal(r.stderr.trim().split('\n').length, 1)
  }
})
