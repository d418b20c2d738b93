// A real HAProxy on both sides of l4lb. In front (`send-proxy-v2` to l4lb): l4lb believes
// HAProxy's header and the backend behind l4lb sees the original client. Behind (`bind ...
// accept-proxy`): HAProxy believes l4lb's header and re-sends it (`send-proxy`) to a test
// backend, whose source must be l4lb's client. Skips cleanly when haproxy is not installed.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { connect, freePort, readLine, spawnL4lb, spawnPeer, within, type L4lbProcess } from '../helpers/index.js'
import { PLANES, planeArgs, planeSkip, type Plane } from '../helpers/planes.js'
import { ProxyBackend, waitConnectable } from '../helpers/proxy.js'

const HAPROXY = '/usr/sbin/haproxy'

if (!existsSync(HAPROXY)) {
  t.plan(0, `no haproxy at ${HAPROXY}`)
} else {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-haproxy-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))

  const backend = await new ProxyBackend('be').start()
  t.teardown(() => backend.stop())
  const frontPort = await freePort() // HAProxy in front of l4lb
  const behindPort = await freePort() // HAProxy behind l4lb

  // l4lb behind HAProxy: trusts 127.0.0.1 (HAProxy's source), sends v1 on to the test backend
  const accepting = await spawnL4lb(['-l', '127.0.0.1:0', '--check', 'none', '-b', backend.address, '--accept-proxy', '127.0.0.1/32', '--proxy-protocol', 'v1'])
  t.teardown(() => accepting.stop())
  // l4lb in front of HAProxy, once per data plane and version
  const sending: Array<{ plane: Plane; version: 'v1' | 'v2'; lb: L4lbProcess | undefined }> = []
  for (const plane of PLANES) {
    for (const version of ['v1', 'v2'] as const) {
      if (planeSkip(plane) !== false) {
        sending.push({ plane, version, lb: undefined })
        continue
      }
      const lb = await spawnL4lb(['-l', '127.0.0.1:0', '--check', 'none', '-b', `127.0.0.1:${behindPort}`, '--proxy-protocol', version, ...planeArgs(plane)])
      t.teardown(() => lb.stop())
      sending.push({ plane, version, lb })
    }
  }

  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(
    cfg,
    `global
  maxconn 256
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend in_front
  bind 127.0.0.1:${frontPort}
  default_backend to_l4lb
backend to_l4lb
  server l4lb 127.0.0.1:${accepting.ports[0]} send-proxy-v2
frontend behind
  bind 127.0.0.1:${behindPort} accept-proxy
  default_backend to_test_backend
backend to_test_backend
  server be 127.0.0.1:${backend.port} send-proxy
`,
  )
  const haproxy = spawnPeer(t, HAPROXY, ['-f', cfg, '-db'])
  try {
    await waitConnectable(frontPort)
    await waitConnectable(behindPort)
  } catch (err) {
    throw new Error(`haproxy did not start: ${String(err)}\n${haproxy.output()}`)
  }

  t.test('accept: HAProxy sends v2 to l4lb; l4lb logs and forwards the real client', async (t) => {
    const client = await within(5000, 'connect', connect(frontPort, '127.0.0.1', '127.5.0.7'))
    const port = client.localPort
    t.equal(await readLine(client), `be 127.5.0.7 ${port}`, 'the backend behind l4lb sees the client HAProxy saw')
    client.end('bye')
    const line = await accepting.waitForLog('connection closed', (l) => l.msg === 'connection closed' && l.client === `127.5.0.7:${port}`)
    t.match(line.via, /^127\.0\.0\.1:\d+$/, 'via names HAProxy')
    t.equal(line.reason === 'proxy-header', false)
  })

  for (const { plane, version, lb } of sending) {
    t.test(`${plane} plane, send ${version}: HAProxy (accept-proxy) believes l4lb's header and passes the client on`, { skip: planeSkip(plane) }, async (t) => {
      if (lb === undefined) return
      const before = backend.seen.length
      const client = await within(5000, 'connect', connect(lb.ports[0]!, '127.0.0.1', '127.5.0.8'))
      const port = client.localPort
      t.equal(await readLine(client), `be 127.5.0.8 ${port}`)
      const header = backend.seen[before]!.header
      t.same(header.destination, { address: '127.0.0.1', port: lb.ports[0] }, 'HAProxy kept l4lb\'s destination too')
      client.destroy()
    })
  }
}
