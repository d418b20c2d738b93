import t from 'tap'
import { EchoBackend, readLine, connect, spawnL4lb } from '../helpers/index.js'
import { planeSkip } from '../helpers/planes.js'

// Issue 14 "Choosing": with no --data-plane, a TCP service runs on the native plane where the
// addon is built and the service uses nothing it lacks, on node otherwise, and the listening
// line says which and why.
t.test('default data plane: auto', { skip: planeSkip('native') }, async (t) => {
  const backend = await new EchoBackend('a').start()
  t.teardown(() => backend.stop())
  const plain = await spawnL4lb(['-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', '--threads', '1'])
  t.teardown(() => plain.stop())
  const line = plain.logs.find((l) => l.msg === 'listening')!
  t.equal(line.plane, 'native', 'a plain TCP service runs on native')
  t.equal(line.planeWhy, 'auto: native addon built')
  const s = await connect(plain.ports[0]!)
  t.equal(await readLine(s), 'a', 'and serves')
  s.destroy()

  const proxied = await spawnL4lb(['-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', '--accept-proxy', '127.0.0.1/32'])
  t.teardown(() => proxied.stop())
  const why = proxied.logs.find((l) => l.msg === 'listening')!
  t.equal(why.plane, 'node', 'a service with --accept-proxy stays on node')
  t.match(why.planeWhy, /accept-proxy/, 'and says why')

  const forced = await spawnL4lb(['-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', '--data-plane', 'node'])
  t.teardown(() => forced.stop())
  t.equal(forced.logs.find((l) => l.msg === 'listening')!.plane, 'node', '--data-plane node forces node')
})
