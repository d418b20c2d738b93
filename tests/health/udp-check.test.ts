import t from 'tap'
import dgram from 'node:dgram'
import { checkOnce, realClock, resolveCheckOptions, type CheckOptions, type CheckResult } from '../../lib/health/index.js'
import { UdpEchoBackend } from '../helpers/udp.js'

function check(port: number, options: Omit<CheckOptions, 'type'>, host = '127.0.0.1'): Promise<CheckResult> {
  return checkOnce({ id: 1, name: `${host}:${port}`, host, port }, resolveCheckOptions({ type: 'udp', timeoutMs: 500, ...options }), realClock)
}

async function closedUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  const port = s.address().port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

t.test('udp: a reply that starts with the expected bytes passes', async (t) => {
  const b = await new UdpEchoBackend('srv').start()
  t.teardown(() => b.stop())
  const r = await check(b.port, { send: Buffer.from('ping'), expect: Buffer.from('srv:pi') })
  t.match(r, { ok: true })
  t.equal(b.received, 1, 'one datagram sent')
})

t.test('udp: with no expectation any reply passes; over IPv6 too', async (t) => {
  const b = await new UdpEchoBackend('v6:x').start('::1')
  t.teardown(() => b.stop())
  t.match(await check(b.port, { send: Buffer.from('ping') }, '::1'), { ok: true })
})

t.test('udp: ICMP port unreachable fails at once with ECONNREFUSED', async (t) => {
  const r = await check(await closedUdpPort(), { send: Buffer.from('ping'), timeoutMs: 2000 })
  t.match(r, { ok: false, error: 'ECONNREFUSED' })
  t.ok(r.durationMs < 1000, `failed in ${r.durationMs}ms, before the timeout`)
})

t.test('udp: silence fails with timeout; a wrong reply says expect mismatch', async (t) => {
  const silent = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => silent.close(() => resolve())))
  t.match(await check(silent.address().port, { send: Buffer.from('ping'), timeoutMs: 200 }), { ok: false, error: 'timeout' })
  const b = await new UdpEchoBackend('other').start()
  t.teardown(() => b.stop())
  t.match(await check(b.port, { send: Buffer.from('ping'), expect: Buffer.from('srv:'), timeoutMs: 200 }), { ok: false, error: /expect mismatch/ })
})

t.test('udp: a check without bytes to send is refused', async (t) => {
  t.throws(() => resolveCheckOptions({ type: 'udp' }), { message: /check\.send.*a udp check needs bytes to send/ })
})
