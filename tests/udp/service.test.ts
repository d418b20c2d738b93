import t, { type Test } from 'tap'
import { pino } from 'pino'
import { configFromFlags } from '../../lib/config/index.js'
import { Pool } from '../../lib/pool/index.js'
import { UdpService } from '../../lib/udp/index.js'
import { eventually } from '../helpers/index.js'
import { UdpClient, UdpEchoBackend } from '../helpers/udp.js'

async function setup(t: Test, names: string[], extra: Record<string, string> = {}) {
  const bs = await Promise.all(names.map((n) => new UdpEchoBackend(n).start()))
  t.teardown(() => Promise.all(bs.map((b) => b.stop())))
  const config = configFromFlags({ listen: ['127.0.0.1:0'], protocol: 'udp', backend: bs.map((b) => b.address), check: 'none', ...extra }).services[0]!
  const pool = new Pool({ name: config.name, balance: config.balance, backends: config.backends, addresses: config.backends.map((b) => b.host), checked: false })
  const udp = new UdpService(config, pool, pino({ level: 'silent' }))
  await udp.listen()
  t.teardown(() => udp.close())
  return { bs, pool, udp, port: udp.addresses()[0]!.port }
}

t.test('a drained backend keeps its sessions and gets no new ones; counts feed the pool', async (t) => {
  const { pool, udp, port } = await setup(t, ['a', 'b'], { balance: 'least-conn' })
  const c1 = await UdpClient.bound('127.0.0.1')
  t.teardown(() => c1.close())
  const first = (await c1.ask('x', port)).toString().split(':')[0]!
  const drained = pool.backends.find((b) => b.name === udp.sessions()[0]!.backend)!
  t.equal(pool.active[drained.id], 1, 'a session counts as an active connection')
  pool.setAdmin(drained.id, 'drain')
  t.equal((await c1.ask('y', port)).toString(), `${first}:y`, 'the existing session stays')
  for (let i = 0; i < 5; i++) {
    const c = await UdpClient.bound('127.0.0.1')
    try {
      t.not((await c.ask('z', port)).toString().split(':')[0], first, 'new flows avoid the drained backend')
    } finally {
      await c.close()
    }
  }
  t.equal(udp.activeSessions, 6)
  const snap = udp.sessions().find((s) => s.backend === drained.name)!
  t.match(snap, { datagramsIn: 2, datagramsOut: 2, bytesIn: 2, bytesOut: 6 })
  t.ok(snap.idleMs >= 0 && snap.idleMs < 1000)
  t.match(udp.stats, { sessionsCreated: 6, datagramsIn: 7, datagramsOut: 7 })
  udp.closeAll('shutdown')
  t.equal(udp.activeSessions, 0)
  t.same([...pool.active], [0, 0], 'every session released its count')
  await udp.whenIdle()
})

t.test('no usable backend: the datagram is dropped and counted, nothing throws', async (t) => {
  const { pool, udp, port } = await setup(t, ['a'])
  pool.setAdmin(0, 'maint')
  const c = await UdpClient.bound('127.0.0.1')
  t.teardown(() => c.close())
  await c.send('x', port)
  await eventually('counted', () => udp.stats.noBackend === 1, 2000)
  t.equal(udp.activeSessions, 0)
})
