import t, { type Test } from 'tap'
import http from 'node:http'
import { EchoBackend, connect, readAll, readLine, spawnL4lb, whoAnswers, within, listen, closeServer } from '../helpers/index.js'

const FAST = ['--check-interval', '100ms', '--check-timeout', '200ms', '--rise', '2', '--fall', '2']

async function backends(t: Test, names: string[]): Promise<EchoBackend[]> {
  const list = await Promise.all(names.map((n) => new EchoBackend(n).start()))
  t.teardown(() => Promise.all(list.map((b) => b.stop())))
  return list
}

const stateChange = (backend: string, to: string, from?: string) => (l: Record<string, unknown>) =>
  l.msg === 'backend state changed' && l.backend === backend && l.to === to && (from === undefined || l.from === from)

t.test('a backend that stops listening is taken out, and comes back when it listens again', async (t) => {
  const [a, b] = await backends(t, ['a', 'b'])
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', a!.address, '-b', b!.address, '--balance', 'round-robin', ...FAST])
  t.teardown(() => lb.stop())
  const seen = new Set<string>()
  for (let i = 0; i < 6; i++) seen.add(await whoAnswers(lb.ports[0]!))
  t.same([...seen].sort(), ['a', 'b'], 'both serve at start')

  const port = b!.port
  const bAddress = b!.address
  await b!.stop()
  const down = await lb.waitForLog('b down', stateChange(bAddress, 'down'))
  t.match(down.reason, /2 consecutive failed checks/)
  for (let i = 0; i < 10; i++) t.equal(await whoAnswers(lb.ports[0]!), 'a', 'only a serves while b is down')

  await b!.start('127.0.0.1', port)
  const up = await lb.waitForLog('b up again', (l) => stateChange(bAddress, 'up')(l) && l.reason !== 'first check passed')
  t.match(up.reason, /2 consecutive passed checks/)
  seen.clear()
  for (let i = 0; i < 6; i++) seen.add(await whoAnswers(lb.ports[0]!))
  t.same([...seen].sort(), ['a', 'b'], 'b is back in rotation')
})

t.test('when every backend is down a new client is closed at once, not left hanging', async (t) => {
  const [a] = await backends(t, ['a'])
  const aAddress = a!.address
  // A 30 s connect timeout and idle timeout: a client left hanging would wait for one of them.
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', aAddress, ...FAST, '--connect-timeout', '30s', '--idle-timeout', '30s'])
  t.teardown(() => lb.stop())
  await a!.stop()
  await lb.waitForLog('a down', stateChange(aAddress, 'down'))
  await lb.waitForLog('no usable backend', (l) => l.msg === 'no usable backend: new connections are closed')
  const started = Date.now()
  const socket = await connect(lb.ports[0]!)
  const { data } = await within(15_000, 'the client to be closed', readAll(socket))
  const waited = Date.now() - started
  t.equal(data.length, 0)
  // Behaviour, not speed (a loaded box may take a while to schedule anything): no backend was
  // tried, and the close came long before either timeout could have fired.
  const line = await lb.waitForLog('the close line', (l) => l.reason === 'no-backend')
  t.equal(line.attempts, 0, 'closed without trying a backend')
  t.ok(waited < 15_000, `closed after ${waited} ms, not after a 30 s timeout`)
})

t.test('backups take over only when no primary is usable', async (t) => {
  const [primary, backup] = await backends(t, ['primary', 'backup'])
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', primary!.address, '-b', `${backup!.address},backup`, ...FAST])
  t.teardown(() => lb.stop())
  for (let i = 0; i < 5; i++) t.equal(await whoAnswers(lb.ports[0]!, `127.3.0.${i + 1}`), 'primary')
  const primaryAddress = primary!.address
  await primary!.stop()
  const down = await lb.waitForLog('primary down', stateChange(primaryAddress, 'down'))
  t.equal(down.usingBackups, true)
  for (let i = 0; i < 5; i++) t.equal(await whoAnswers(lb.ports[0]!, `127.3.0.${i + 1}`), 'backup')
})

t.test('--on-down shutdown closes the connections of a backend marked down; keep (default) does not', async (t) => {
  for (const mode of ['shutdown', 'keep']) {
    // The backend's check port is a separate listener we can close while its data connections live on.
    const a = new EchoBackend('a')
    await a.start()
    t.teardown(() => a.stop())
    const checkServer = (await import('node:net')).createServer((s) => s.destroy())
    const checkPort = await listen(checkServer)
    t.teardown(() => closeServer(checkServer))
    const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', `${a.address},check-port=${checkPort}`, '--on-down', mode, ...FAST])
    t.teardown(() => lb.stop())
    const socket = await connect(lb.ports[0]!)
    t.equal(await readLine(socket), 'a')
    // Listen for the close before it can happen: the socket may close before the log line is read.
    const ended = mode === 'shutdown' ? readAll(socket) : undefined
    await closeServer(checkServer)
    await lb.waitForLog('a down', stateChange(a.address, 'down'))
    if (ended) {
      const { data } = await within(2000, 'the connection to be closed', ended)
      t.equal(data.length, 0, 'shutdown: the established connection is closed')
      const line = await lb.waitForLog('backend-down close', (l) => l.reason === 'backend-down')
      t.equal(line.backend, a.address)
    } else {
      socket.write('still here\n')
      t.equal(await readLine(socket), 'still here', 'keep: the established connection goes on')
      socket.destroy()
    }
    await lb.stop()
    await a.stop()
  }
})

t.test('HTTP checks pick the Patroni primary: /primary 200 on the leader, 503 on the replica', async (t) => {
  const [leader, replica] = await backends(t, ['leader', 'replica'])
  const patroni = (role: 'leader' | 'replica'): http.Server =>
    http.createServer((req, res) => {
      const primary = role === 'leader'
      const ok = req.url === '/primary' ? primary : req.url === '/replica' ? !primary : false
      res.writeHead(ok ? 200 : 503).end(role)
    })
  const api = [patroni('leader'), patroni('replica')]
  const apiPorts = await Promise.all(api.map((s) => listen(s)))
  t.teardown(() => Promise.all(api.map((s) => closeServer(s))))
  const backendsArgs = ['-b', `${leader!.address},check-port=${apiPorts[0]}`, '-b', `${replica!.address},check-port=${apiPorts[1]}`]
  // This test is about which answer marks a backend down, not how fast: a 2 s check timeout, so
  // a loaded box's slow reply is not the failure the replica is marked down for (it was, at load 13)
  const patient = [...FAST, '--check-timeout', '2s']
  const rw = await spawnL4lb(['-l', '127.0.0.1:0', ...backendsArgs, '--check', 'http', '--check-http-path', '/primary', ...patient])
  t.teardown(() => rw.stop())
  const ro = await spawnL4lb(['-l', '127.0.0.1:0', ...backendsArgs, '--check', 'http', '--check-http-path', '/replica', ...patient])
  t.teardown(() => ro.stop())
  for (let i = 0; i < 8; i++) t.equal(await whoAnswers(rw.ports[0]!, `127.4.0.${i + 1}`), 'leader', 'read-write entry → primary')
  for (let i = 0; i < 8; i++) t.equal(await whoAnswers(ro.ports[0]!, `127.4.0.${i + 1}`), 'replica', 'read-only entry → replica')
  const down = await rw.waitForLog('replica down on the rw service', stateChange(replica!.address, 'down'))
  t.match(down.lastError, /http status 503/)
})
