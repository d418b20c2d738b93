import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { EchoBackend, ROOT, connect, eventually, readLine, whoAnswers, within, tempDir } from '../helpers/index.js'
import { PROMTOOL_SKIP, promtool, request, sampleValue, spawnWithAdmin } from '../admin/helpers.js'
import { PLANES, planeArgs, planeSkip } from '../helpers/planes.js'

/** Metric families by name from `# TYPE` lines; throws on a name typed twice. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (!m) continue
    if (out.has(m[1]!)) throw new Error(`TYPE ${m[1]} twice`)
    out.set(m[1]!, m[2]!)
  }
  return out
}

t.test('metrics pass promtool check metrics, and OpenMetrics sees one family per name', async (t) => {
  const dir = tempDir(t, 'l4lb-admin-')
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  const file = path.join(dir, 'l4lb.yaml')
  writeFileSync(file, [
    'services:',
    '  - name: web',
    '    listen: ["127.0.0.1:0"]',
    '    health: {type: tcp, interval: 200ms}',
    `    backends: ["${a.address}", "127.0.0.1:1"]`,
    '  - name: game',
    '    listen: ["127.0.0.1:0"]',
    '    protocol: udp',
    '    health: {type: none}',
    '    backends: ["127.0.0.1:2"]',
    '',
  ].join('\n'))
  const { lb, adminPort } = await spawnWithAdmin(['-c', file])
  t.teardown(() => lb.stop())
  t.equal(await whoAnswers(lb.ports[0]!), 'a')
  const histogramCount = `l4lb_check_duration_seconds_count{service="web",backend="${a.address}"}`
  const text = (await eventually('3 checks in the histogram', async () => {
    const body = (await request(adminPort, '/metrics')).body
    return (sampleValue(body, histogramCount) ?? 0) >= 3 ? body : undefined
  }))!

  const types = families(text)
  for (const [name, type] of types) {
    // Under OpenMetrics a counter `x_total` is family `x`: no other metric may be called `x`.
    if (type === 'counter') {
      t.ok(name.endsWith('_total'), `${name}: a counter ends in _total`)
      t.notOk(types.has(name.slice(0, -'_total'.length)), `${name}: no metric named like its family`)
    }
  }
  t.equal(types.get('l4lb_udp_active_sessions'), 'gauge')
  t.notOk(types.has('l4lb_udp_sessions'), 'the gauge that clashed with l4lb_udp_sessions_total is gone')
  t.equal(types.get('l4lb_check_duration_seconds'), 'histogram')
  t.equal(sampleValue(text, `l4lb_check_duration_seconds_bucket{service="web",backend="${a.address}",le="+Inf"}`), sampleValue(text, histogramCount), '+Inf bucket = count')
  t.ok((sampleValue(text, `l4lb_check_duration_seconds_sum{service="web",backend="${a.address}"}`) ?? -1) >= 0)
  t.equal(sampleValue(text, `l4lb_connect_errors_total{service="web",backend="${a.address}",reason="ECONNREFUSED"}`), 0, 'connect errors exported as 0 before the first')
  t.equal(sampleValue(text, `l4lb_connect_errors_total{service="web",backend="${a.address}",reason="timeout"}`), 0)
  const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
  t.equal(sampleValue(text, `l4lb_build_info{version="${version}",node="${process.version}"}`), 1)
  t.equal(sampleValue(text, 'l4lb_udp_active_sessions{service="game"}'), 0)
  t.equal(sampleValue(text, `l4lb_backend_weight{service="web",backend="${a.address}"}`), 1)

  t.test('promtool check metrics', { skip: PROMTOOL_SKIP }, async (t) => {
    const result = await promtool(text)
    t.equal(result.code, 0, result.output)
    t.equal(result.output.trim(), '', 'no lint finding')
    // The checker does find problems: a counter without _total is one.
    const bad = await promtool('# HELP l4lb_things Things.\n# TYPE l4lb_things counter\nl4lb_things 1\n')
    t.not(bad.code, 0, 'promtool rejects a badly named counter')
  })
})

t.test('every wrong method on every route answers 405 with Allow; only the page is served without the token', async (t) => {
  const dir = tempDir(t, 'l4lb-admin-')
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  writeFileSync(path.join(dir, 'token'), 's3cret\n')
  const { lb, adminPort } = await spawnWithAdmin(['-l', '127.0.0.1:0', '--protocol', 'tcp,udp', '-b', a.address, '--check', 'none', '--name', 'web',
    '--admin-token-file', path.join(dir, 'token')])
  t.teardown(() => lb.stop())
  const reads = ['/', '/page.js', '/page.css', '/events', '/status', '/healthz', '/metrics', '/sessions/web']
  const writes = [`/backends/web/${a.address}/drain`, `/backends/web/${a.address}/maint`, `/backends/web/${a.address}/enable`, `/backends/web/${a.address}/weight`]
  for (const route of reads) {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await request(adminPort, route, { method })
      t.equal(r.status, 405, `${method} ${route}`)
      t.equal(r.headers.allow, 'GET, HEAD', `${method} ${route}: Allow`)
    }
  }
  for (const route of writes) {
    for (const method of ['GET', 'HEAD', 'PUT', 'DELETE']) {
      const r = await request(adminPort, route, { method })
      t.equal(r.status, 405, `${method} ${route}`)
      t.equal(r.headers.allow, 'POST', `${method} ${route}: Allow`)
    }
  }
  t.equal((await request(adminPort, '/nope')).status, 404)

  const page = await request(adminPort, '/')
  t.equal(page.status, 200, 'the page itself needs no token (it carries no data)')
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.headers['content-security-policy'], /script-src 'self'/)
  t.match(page.body, '<script src="page.js"')
  t.equal((await request(adminPort, '/page.js')).status, 200)
  const denied = await request(adminPort, '/status')
  t.equal(denied.status, 401)
  t.equal(denied.headers['www-authenticate'], 'Bearer')
  t.equal((await request(adminPort, '/events')).status, 401, 'the feed needs the token')
  t.equal((await request(adminPort, `/backends/web/${a.address}/drain`, { method: 'POST' })).status, 401)
  const head = await request(adminPort, '/status', { method: 'HEAD', token: 's3cret' })
  t.equal(head.status, 200)
  t.equal(head.body, '', 'HEAD: no body')

  const crossSite = await request(adminPort, `/backends/web/${a.address}/drain`, { method: 'POST', token: 's3cret', headers: { origin: 'http://evil.example' } })
  t.equal(crossSite.status, 403, 'a POST from another site is refused')
  const status = JSON.parse((await request(adminPort, '/status', { token: 's3cret' })).body)
  t.equal(status.services[0].backends[0].state, 'up', 'and changed nothing')
  const sameSite = await request(adminPort, `/backends/web/${a.address}/drain`, { method: 'POST', token: 's3cret', headers: { origin: `http://127.0.0.1:${adminPort}` } })
  t.equal(sameSite.status, 200, 'the page\'s own POST is served')
})

t.test('POST /backends/{service}/{address}/weight: picks follow, /status and /metrics show it, a reload restores the config', async (t) => {
  const dir = tempDir(t, 'l4lb-admin-')
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  const file = path.join(dir, 'l4lb.yaml')
  writeFileSync(file, `services:\n  - name: app\n    listen: ["127.0.0.1:0"]\n    balance: round-robin\n    health: {type: none}\n    backends: ["${a.address}", "${b.address}"]\n`)
  const { lb, adminPort } = await spawnWithAdmin(['-c', file])
  t.teardown(() => lb.stop())
  const port = lb.ports[0]!
  const count = async (n: number): Promise<Record<string, number>> => {
    const seen: Record<string, number> = { a: 0, b: 0 }
    for (let i = 0; i < n; i++) seen[await whoAnswers(port)]!++
    return seen
  }
  const weightPath = `/backends/app/${encodeURIComponent(a.address)}/weight`
  const set = await request(adminPort, weightPath, { method: 'POST', body: '{"weight": 3}' })
  t.equal(set.status, 200, set.body)
  t.same(JSON.parse(set.body), { service: 'app', backend: a.address, from: 1, to: 3, configWeight: 1 })
  t.same(await count(40), { a: 30, b: 10 }, 'round-robin follows the new weight 3:1')
  const status = JSON.parse((await request(adminPort, '/status')).body)
  t.same(status.services[0].backends.map((x: { weight: number; configWeight: number }) => [x.weight, x.configWeight]), [[3, 1], [1, 1]])
  t.equal(sampleValue((await request(adminPort, '/metrics')).body, `l4lb_backend_weight{service="app",backend="${a.address}"}`), 3)
  const byQuery = await request(adminPort, `${weightPath}?weight=2`, { method: 'POST' })
  t.equal(byQuery.status, 200)
  t.equal(JSON.parse(byQuery.body).to, 2, '?weight= works too')

  for (const body of ['{"weight": 0}', '{"weight": "x"}', '{"weight": 1.5}', '{"weight": 1e9}', '{}', 'nope']) {
    const r = await request(adminPort, weightPath, { method: 'POST', body })
    t.equal(r.status, 400, `${body}: 400`)
    t.match(JSON.parse(r.body).error, /weight|JSON/, `${body}: says what is wrong`)
  }
  const big = await request(adminPort, weightPath, { method: 'POST', body: `{"weight": 1, "pad": "${'x'.repeat(4096)}"}` })
  t.equal(big.status, 413, 'a large body is refused')
  t.equal((await request(adminPort, `/backends/app/127.0.0.1:9/weight`, { method: 'POST', body: '{"weight": 2}' })).status, 404)
  t.equal((await request(adminPort, `/backends/nope/${a.address}/weight`, { method: 'POST', body: '{"weight": 2}' })).status, 404)
  t.equal(JSON.parse((await request(adminPort, '/status')).body).services[0].backends[0].weight, 2, 'refused requests changed nothing')

  lb.proc.kill('SIGHUP')
  await lb.waitForLog('reloaded', (l) => l.msg === 'reloaded')
  t.equal(JSON.parse((await request(adminPort, '/status')).body).services[0].backends[0].weight, 1, 'a reload brings the config weight back')
  t.same(await count(20), { a: 10, b: 10 })
})

for (const plane of PLANES) {
  t.test(`${plane} plane: a long-lived connection shows its bytes in /metrics and /status before it closes`, { skip: planeSkip(plane) }, async (t) => {
    const a = await new EchoBackend('a').start()
    t.teardown(() => a.stop())
    const { lb, adminPort } = await spawnWithAdmin(['-l', '127.0.0.1:0', '-b', a.address, '--check', 'none', '--name', 'pg', ...planeArgs(plane)])
    t.teardown(() => lb.stop())
    const socket = await connect(lb.ports[0]!)
    t.teardown(() => socket.destroy())
    t.equal(await readLine(socket), 'a')
    const N = 256 * 1024
    let echoed = 0
    const back = new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => {
        echoed += c.length
        if (echoed >= N) resolve()
      })
    })
    socket.resume()
    socket.write(Buffer.alloc(N, 0x61))
    await within(10_000, `${N} bytes echoed`, back)

    const metrics = (await request(adminPort, '/metrics')).body
    t.equal(sampleValue(metrics, `l4lb_active_connections{service="pg",backend="${a.address}"}`), 1, 'the connection is still open')
    t.ok(sampleValue(metrics, `l4lb_bytes_total{service="pg",backend="${a.address}",direction="in"}`)! >= N, 'bytes from the client counted while open')
    t.ok(sampleValue(metrics, `l4lb_bytes_total{service="pg",backend="${a.address}",direction="out"}`)! >= N + 2, 'bytes from the backend counted while open')
    t.equal(sampleValue(metrics, `l4lb_connections_total{service="pg",backend="${a.address}"}`), 1, 'the connection counts in the total while open')
    const backend = JSON.parse((await request(adminPort, '/status')).body).services[0].backends[0]
    t.ok(backend.bytesIn >= N && backend.bytesOut >= N + 2, `/status too (${backend.bytesIn}/${backend.bytesOut})`)
    t.equal(backend.connectionsTotal, 1, '/status counts it too')

    socket.end()
    await lb.waitForLog('connection closed', (l) => l.msg === 'connection closed')
    const after = (await request(adminPort, '/metrics')).body
    t.equal(sampleValue(after, `l4lb_connections_total{service="pg",backend="${a.address}"}`), 1, 'and once after it closed')
    t.equal(sampleValue(after, `l4lb_bytes_total{service="pg",backend="${a.address}",direction="in"}`), N, 'at close the count is exact, and never went back')
    t.equal(sampleValue(after, `l4lb_bytes_total{service="pg",backend="${a.address}",direction="out"}`), N + 2)
  })
}

/** Opens GET /events; resolves with the response once its head arrived, collecting its text. */
function openStream(port: number, token?: string): Promise<{ status: number; text: () => string; close: () => void }> {
  return within(5000, 'GET /events', new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/events', agent: false, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => (text += c))
      res.on('error', () => {})
      resolve({ status: res.statusCode ?? 0, text: () => text, close: () => req.destroy() })
    })
    req.on('error', reject)
  }))
}

t.test('GET /events: the history, then a state event a second; at most 16 streams, a closed one frees its place', async (t) => {
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  const { lb, adminPort } = await spawnWithAdmin(['-l', '127.0.0.1:0', '-b', a.address, '--check', 'none', '--name', 'web'])
  t.teardown(() => lb.stop())
  const streams: Array<Awaited<ReturnType<typeof openStream>>> = []
  t.teardown(() => streams.forEach((s) => s.close()))
  for (let i = 0; i < 16; i++) streams.push(await openStream(adminPort))
  t.same(streams.map((s) => s.status), Array(16).fill(200))
  const first = streams[0]!
  await eventually('history and two state events', () => (first.text().match(/^event: state$/gm) ?? []).length >= 2, 5000)
  t.match(first.text(), /^retry: \d+\n\nevent: history\ndata: \{"rates":\{"web":\{/)
  const state = JSON.parse(/^event: state\ndata: (.*)$/m.exec(first.text())![1]!)
  t.equal(state.status.services[0].backends[0].address, a.address)
  t.equal(state.writes, false, 'no token: the page offers no writes')

  const refused = await openStream(adminPort)
  t.equal(refused.status, 503, 'the 17th stream is refused')
  refused.close()
  streams.shift()!.close()
  const again = (await eventually('a stream accepted after one closed', async () => {
    const s = await openStream(adminPort)
    if (s.status === 200) return s
    s.close()
    return undefined
  }))!
  streams.push(again)
  t.equal(again.status, 200)
})
