/**
 * The library entry point (lib/index.ts): start services from a config object, extend them with
 * a custom algorithm and a custom health check, reload, status, drain, close.
 */
import t from 'tap'
import net from 'node:net'
import { Writable } from 'node:stream'
import pino from 'pino'
import { createRegistry, start, ConfigErrors, type Algorithm, type HealthCheck } from '../../lib/index.js'
import { EchoBackend, connect, eventually, readLine, whoAnswers } from '../helpers/index.js'

const quiet = pino({ level: 'silent' })

t.test('start(config) runs a service from a plain object; status, reload, close', async (t) => {
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  const lb = await start({ services: [{ name: 'app', listen: ['127.0.0.1:0'], balance: 'round-robin', health: { type: 'none' }, backends: [a.address] }] }, { logger: quiet })
  t.teardown(() => lb.close())
  const [listen] = lb.addresses()
  t.same({ service: listen?.service, protocol: listen?.protocol }, { service: 'app', protocol: 'tcp' })
  t.equal(await whoAnswers(listen!.port), 'a')
  t.equal(lb.status().services[0]?.backends[0]?.connectionsTotal, 1, 'status() counts the connection')

  const result = await lb.reload({ services: [{ name: 'app', listen: ['127.0.0.1:0'], balance: 'round-robin', health: { type: 'none' }, backends: [b.address] }] })
  t.same(result.updated, ['app'])
  t.equal(await whoAnswers(listen!.port), 'b', 'the reload swapped the backends on the same listener')
  await t.rejects(lb.reload({ services: [{ listen: ['127.0.0.1:0'], backends: ['db1:99999'] }] }), ConfigErrors, 'an invalid config rejects')
  t.equal(await whoAnswers(listen!.port), 'b', '...and changes nothing')

  await lb.close()
  await t.rejects(connect(listen!.port), /ECONNREFUSED/, 'closed: nothing listens')
})

t.test('a config error names the key, as l4lb check does', async (t) => {
  await t.rejects(start({ services: [{ listen: ['127.0.0.1:0'], backends: ['127.0.0.1:1'], balance: 'fastest' }] }, { logger: quiet }),
    { name: 'ConfigErrors', message: /services\[0\]\.balance "fastest": must be one of/ })
})

t.test('a custom balancing algorithm registered from TypeScript picks the backends', async (t) => {
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  // "last": always the backend whose name sorts last among the usable ones.
  const last: Algorithm = {
    hashed: false,
    createPicker(entries) {
      let best = -1
      entries.forEach((e, i) => {
        if (best < 0 || e.name > entries[best]!.name) best = i
      })
      return { pick: (_hash, exclude) => (best >= 0 && !exclude?.has(best) ? best : -1) }
    },
  }
  const registry = createRegistry().addAlgorithm('last', last)
  t.throws(() => registry.addAlgorithm('maglev', last), /already registered/, 'built-in names are taken')
  const expected = a.address > b.address ? 'a' : 'b'
  const lb = await start({ services: [{ listen: ['127.0.0.1:0'], balance: 'last', health: { type: 'none' }, backends: [a.address, b.address] }] }, { registry, logger: quiet })
  t.teardown(() => lb.close())
  for (let i = 0; i < 4; i++) t.equal(await whoAnswers(lb.addresses()[0]!.port), expected)
  t.equal(lb.status().services[0]?.balance, 'last')
  // Without the registry the name is unknown: nothing was registered process-wide.
  await t.rejects(start({ services: [{ listen: ['127.0.0.1:0'], balance: 'last', backends: [a.address] }] }, { logger: quiet }), /balance "last"/)
})

t.test('a custom health check takes a failing backend out with its reason, and back in when it passes', async (t) => {
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  let bHealthy = false
  const checked = new Set<string>()
  const flag: HealthCheck = {
    validate: (health) => (health.intervalMs < 50 ? 'interval must be at least 50ms' : undefined),
    async run(target) {
      checked.add(target.name)
      if (target.port === b.port && !bHealthy) throw new Error('maintenance flag set')
    },
  }
  const registry = createRegistry().addCheck('flag', flag)
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }))
  const lb = await start({
    services: [{ listen: ['127.0.0.1:0'], balance: 'round-robin', health: { type: 'flag', interval: '100ms', timeout: '1s', rise: 1, fall: 1 }, backends: [a.address, b.address] }],
  }, { registry, logger })
  t.teardown(() => lb.close())
  const port = lb.addresses()[0]!.port
  await t.rejects(lb.reload({ services: [{ listen: ['127.0.0.1:0'], health: { type: 'flag', interval: '10ms' }, backends: [a.address] }] }),
    { name: 'ConfigErrors', message: 'services[0].health: flag: interval must be at least 50ms' }, 'the check validates its settings at load')
  t.same([...checked].sort(), [a.address, b.address].sort(), 'both backends were probed by the custom check')
  const bStatus = () => lb.status().services[0]!.backends.find((x) => x.address === b.address)!
  t.equal(bStatus().state, 'down')
  t.equal(bStatus().lastError, 'maintenance flag set', 'the thrown message is the reason')
  for (let i = 0; i < 3; i++) t.equal(await whoAnswers(port), 'a')
  bHealthy = true
  await eventually('b up', () => bStatus().state === 'up', 5000)
  const seen = new Set<string>()
  for (let i = 0; i < 4; i++) seen.add(await whoAnswers(port))
  t.same([...seen].sort(), ['a', 'b'])
  t.ok(lines.some((l) => l.includes('"backend state changed"')), 'state changes reach the given logger')
})

t.test('drain() lets an established connection finish, then resolves', async (t) => {
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  const lb = await start({ services: [{ listen: ['127.0.0.1:0'], health: { type: 'none' }, backends: [a.address], drainTimeout: '5s' }] }, { logger: quiet })
  const port = lb.addresses()[0]!.port
  const held = await connect(port)
  t.equal(await readLine(held), 'a')
  let drained = false
  const draining = lb.drain().then(() => (drained = true))
  await eventually('listener closed', () => new Promise<boolean>((resolve) => {
    const probe = net.connect(port, '127.0.0.1')
    probe.once('connect', () => (probe.destroy(), resolve(false)))
    probe.once('error', () => resolve(true))
  }))
  held.write('still here\n')
  t.equal(await readLine(held), 'still here', 'the established connection still works while draining')
  t.equal(drained, false)
  held.end()
  await draining
  t.equal(drained, true)
})
