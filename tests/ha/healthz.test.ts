/**
 * `GET /healthz` and `l4lb status --healthy`: the one bit keepalived's vrrp_script and a BGP
 * health gate read. 200/exit 0 while every service has a usable backend; 503/exit 1 naming the
 * services that have none, when the endpoint is unreachable, and while the process stops.
 */
import t from 'tap'
import http from 'node:http'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { EchoBackend, connect, eventually, readLine, runL4lb, spawnL4lb, tempDir } from '../helpers/index.js'

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

t.test('healthz follows every service\'s usable set, by health checks and by admin state; status --healthy exits 0/1', async (t) => {
  const dir = tempDir(t, 'l4lb-healthz-')
  const web = await new EchoBackend('web').start()
  const db = await new EchoBackend('db').start()
  t.teardown(() => Promise.all([web.stop(), db.stop()]))
  const file = path.join(dir, 'l4lb.yaml')
  writeFileSync(file, `services:
  - name: web
    listen: ["127.0.0.1:0"]
    drainTimeout: 20s
    health: { type: tcp, interval: 100ms, timeout: 500ms, rise: 1, fall: 1 }
    backends: ["${web.address}"]
  - name: db
    listen: ["127.0.0.2:0"]
    health: { type: none }
    backends: ["${db.address}"]
admin: 127.0.0.1:0
`)
  const lb = await spawnL4lb(['-c', file])
  t.teardown(() => lb.stop())
  const adminLine = await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const admin = String(adminLine.admin)
  const adminPort = Number(admin.split(':').pop())
  await eventually('web backend up', async () => (await get(adminPort, '/healthz')).status === 200, 10_000)

  const ok = await get(adminPort, '/healthz')
  t.same(JSON.parse(ok.body), { healthy: true, failing: [], stopping: false, services: 2 })
  const healthy = await runL4lb(['status', '--healthy', '--admin', admin], 30_000)
  t.equal(healthy.code, 0, healthy.stderr)
  t.equal(healthy.stdout, 'healthy: 2 service(s), each with a usable backend\n')

  // An operator takes db's only backend out: db has nothing usable, web is fine.
  t.equal((await runL4lb(['maint', 'db', db.address, '--admin', admin], 30_000)).code, 0)
  const one = await get(adminPort, '/healthz')
  t.equal(one.status, 503)
  t.same(JSON.parse(one.body).failing, ['db'])
  const unhealthy = await runL4lb(['status', '--healthy', '--admin', admin], 30_000)
  t.equal(unhealthy.code, 1)
  t.equal(unhealthy.stderr, 'l4lb: unhealthy: no usable backend in db\n')

  // web's backend dies: the prober marks it down and both services are named.
  await web.stop()
  const both = await eventually('web marked down', async () => {
    const r = await get(adminPort, '/healthz')
    return JSON.parse(r.body).failing.length === 2 ? r : undefined
  }, 10_000)
  t.equal(both!.status, 503)
  t.same(JSON.parse(both!.body).failing, ['web', 'db'])

  // Back: web's backend listens again on its port, db is enabled.
  await web.start('127.0.0.1', web.port)
  t.equal((await runL4lb(['enable', 'db', db.address, '--admin', admin], 30_000)).code, 0)
  await eventually('healthy again', async () => (await get(adminPort, '/healthz')).status === 200, 10_000)

  // SIGTERM with a connection open: listeners close, the drain waits for it, and meanwhile
  // /healthz says 503 so a router moves the address away instead of sending clients to RSTs.
  const held = await connect(lb.ports[0]!)
  t.equal(await readLine(held), 'web')
  lb.proc.kill('SIGTERM')
  const stopping = await eventually('healthz 503 while draining', async () => {
    const r = await get(adminPort, '/healthz')
    return r.status === 503 ? r : undefined
  }, 10_000)
  t.same(JSON.parse(stopping!.body), { healthy: false, failing: [], stopping: true, services: 2 })
  const draining = await runL4lb(['status', '--healthy', '--admin', admin], 30_000)
  t.equal(draining.code, 1)
  t.equal(draining.stderr, 'l4lb: unhealthy: stopping\n')
  held.destroy()
  t.equal(await lb.exited, 0, 'exits once the connection is gone')

  const gone = await runL4lb(['status', '--healthy', '--admin', admin], 30_000)
  t.equal(gone.code, 1, 'an unreachable l4lb is not healthy')
  t.match(gone.stderr, /^l4lb: cannot reach the admin endpoint at 127\.0\.0\.1:\d+: ECONNREFUSED\n$/)
})
