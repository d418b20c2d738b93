import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { EchoBackend, connect, eventually, readLine, spawnL4lb, whoAnswers } from '../helpers/index.js'
import { TestDnsServer } from '../helpers/dns.js'

t.test('a backend hostname is re-resolved: a new address takes new connections, old ones carry on', async (t) => {
  const dns = await new TestDnsServer().start()
  t.teardown(() => dns.close())
  // Two backends on the same port at different loopback addresses: only DNS tells them apart.
  const first = await new EchoBackend('first').start('127.0.0.1')
  const second = await new EchoBackend('second').start('127.0.0.2', first.port)
  t.teardown(() => Promise.all([first.stop(), second.stop()]))
  dns.a.set('app.l4lb.test', ['127.0.0.1'])
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', `app.l4lb.test:${first.port}`, '--resolver', dns.address,
    '--resolve-interval', '200ms', '--check', 'none'])
  t.teardown(() => lb.stop())
  t.equal(await whoAnswers(lb.ports[0]!), 'first')
  const held = await connect(lb.ports[0]!)
  t.equal(await readLine(held), 'first')

  dns.a.set('app.l4lb.test', ['127.0.0.2'])
  await lb.waitForLog('re-resolved', (l) => l.msg === 'backends re-resolved', 5000)
  t.equal(await whoAnswers(lb.ports[0]!), 'second', 'new connections go to the new address')
  held.write('still\n')
  t.equal(await readLine(held), 'still', 'the established connection to the old address is undisturbed')
  held.destroy()
})

t.test('srv: backends expand to the SRV targets with their ports and weights, and follow changes', async (t) => {
  const dns = await new TestDnsServer().start()
  t.teardown(() => dns.close())
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  dns.a.set('a.l4lb.test', ['127.0.0.1'])
  dns.a.set('b.l4lb.test', ['127.0.0.1'])
  dns.srv.set('_app._tcp.l4lb.test', [
    { priority: 10, weight: 300, port: a.port, target: 'a.l4lb.test' },
    { priority: 10, weight: 100, port: b.port, target: 'b.l4lb.test' },
  ])
  const dir = mkdtempSync(path.join(tmpdir(), 'l4lb-dns-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'l4lb.yaml')
  writeFileSync(file, [
    `resolvers: ["${dns.address}"]`,
    'services:',
    '  - name: app',
    '    listen: ["127.0.0.1:0"]',
    '    balance: round-robin',
    '    resolveInterval: 200ms',
    '    health: {type: none}',
    '    backends: ["srv:_app._tcp.l4lb.test"]',
    '',
  ].join('\n'))
  const lb = await spawnL4lb(['-c', file])
  t.teardown(() => lb.stop())
  const counts: Record<string, number> = { a: 0, b: 0 }
  for (let i = 0; i < 40; i++) counts[await whoAnswers(lb.ports[0]!)]!++
  t.same(counts, { a: 30, b: 10 }, 'SRV weights 300:100 become 3:1')

  const held = await connect(lb.ports[0]!)
  const heldBy = await readLine(held)
  dns.srv.set('_app._tcp.l4lb.test', [{ priority: 10, weight: 100, port: b.port, target: 'b.l4lb.test' }])
  await lb.waitForLog('re-resolved', (l) => l.msg === 'backends re-resolved', 5000)
  for (let i = 0; i < 5; i++) t.equal(await whoAnswers(lb.ports[0]!), 'b', 'a left the SRV answer: only b')
  held.write('ping\n')
  t.equal(await readLine(held), 'ping', `the connection to ${heldBy} is not disturbed`)
  held.destroy()
  await eventually('queries counted', () => dns.queries > 2)
})

t.test('an unresolvable backend name: the service starts degraded with it down for that DNS error, and it joins once it resolves', async (t) => {
  const dns = await new TestDnsServer().start()
  t.teardown(() => dns.close())
  const ok = await new EchoBackend('ok').start()
  const late = await new EchoBackend('late').start()
  t.teardown(() => Promise.all([ok.stop(), late.stop()]))
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', ok.address, '-b', `late.l4lb.test:${late.port}`, '--balance', 'round-robin',
    '--resolver', dns.address, '--resolve-interval', '200ms', '--check', 'none', '--admin', '127.0.0.1:0'])
  t.teardown(() => lb.stop())
  const warned = await lb.waitForLog('the unresolved warning', (l) => l.msg === 'backend name does not resolve: down until it does')
  t.equal(warned.backend, `late.l4lb.test:${late.port}`)
  t.match(warned.lastError, /cannot resolve "late\.l4lb\.test": ENOTFOUND/)
  for (let i = 0; i < 4; i++) t.equal(await whoAnswers(lb.ports[0]!), 'ok', 'traffic goes to the backend that resolved')

  const adminLine = await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const status = JSON.parse(await (await fetch(`http://${adminLine.admin as string}/status`)).text()) as { services: Array<{ backends: Array<{ address: string; state: string; lastReason: string; lastError: string }> }> }
  const down = status.services[0]!.backends.find((b) => b.address === `late.l4lb.test:${late.port}`)
  t.same({ state: down?.state, lastReason: down?.lastReason }, { state: 'down', lastReason: 'dns' }, '/status: down for DNS')
  t.match(down?.lastError, /ENOTFOUND/, '/status names the DNS error')

  dns.a.set('late.l4lb.test', ['127.0.0.1'])
  await lb.waitForLog('re-resolved', (l) => l.msg === 'backends re-resolved', 5000)
  const seen = new Set<string>()
  for (let i = 0; i < 4; i++) seen.add(await whoAnswers(lb.ports[0]!))
  t.same([...seen].sort(), ['late', 'ok'], 'once resolved it takes its share')
})
