/**
 * lib/admin against a real runtime in this process, on loopback: what the e2e tests
 * (tests/e2e/admin.test.ts, tests/ha/healthz.test.ts) do not assert yet — counters per reason
 * after the events they count, label escaping, the one-line errors, the backend actions'
 * answers, a unix-socket endpoint, and a state change reaching an open /events stream.
 */
import t, { type Test } from 'tap'
import http from 'node:http'
import path from 'node:path'
import pino from 'pino'
import { startAdmin } from '../../lib/admin/index.js'
import { parseConfig, type ConfigInput } from '../../lib/api/index.js'
import type { Config } from '../../lib/config/index.js'
import { Runtime } from '../../lib/runtime/index.js'
import { EchoBackend, connect, eventually, readAll, readLine, whoAnswers, within, tempDir } from '../helpers/index.js'
import { PROMTOOL_SKIP, promtool, request, sampleValue } from './helpers.js'

const quiet = pino({ level: 'silent' })

interface Running {
  runtime: Runtime
  /** The admin endpoint's port. */
  port: number
  /** Connects to service `name`'s TCP listener. */
  dial(name: string): ReturnType<typeof connect>
  /** Connects to service `name` and reads the backend's greeting. */
  who(name: string): Promise<string>
}

/** A runtime and its admin endpoint from `input` (validated; `tweak` may then change it), stopped at teardown. */
async function running(t: Test, input: ConfigInput, tweak: (config: Config) => Config = (c) => c): Promise<Running> {
  // The node plane: what is asserted here is what admin renders, from counters that plane keeps live.
  const config = tweak(parseConfig({ admin: '127.0.0.1:0', dataPlane: 'node', ...input }))
  const runtime = await Runtime.start(config, quiet)
  const admin = await startAdmin(config.admin, runtime, quiet)
  t.teardown(async () => {
    await runtime.stop(0)
    await admin?.close()
  })
  return {
    runtime,
    port: Number(admin!.address().split(':').pop()),
    dial: (name) => connect(...listenerOf(runtime, name)),
    who: (name) => {
      const [port, host] = listenerOf(runtime, name)
      return whoAnswers(port, undefined, host)
    },
  }
}

function listenerOf(runtime: Runtime, name: string): [number, string] {
  const a = runtime.services.get(name)!.tcp!.addresses()[0]!
  return [a.port, a.host]
}

async function backend(t: Test, name: string): Promise<EchoBackend> {
  const b = await new EchoBackend(name).start()
  t.teardown(() => b.stop())
  return b
}

const json = async (port: number, urlPath: string, options: Parameters<typeof request>[2] = {}): Promise<{ status: number; body: any }> => {
  const r = await request(port, urlPath, options)
  t.match(r.headers['content-type'], /^application\/json/, `${urlPath}: JSON`)
  return { status: r.status, body: JSON.parse(r.body) }
}

t.test('counters by reason follow what happened: a refused connect and its retry, a backend in maint, a full service', async (t) => {
  const a = await backend(t, 'a')
  const lb = await running(t, {
    services: [
      { name: 'flaky', listen: ['127.0.0.1:0'], balance: 'round-robin', retries: 1, health: { type: 'none' }, backends: ['127.0.0.1:1', a.address] },
      { name: 'gone', listen: ['127.0.0.2:0'], health: { type: 'none' }, backends: [a.address] },
      { name: 'small', listen: ['127.0.0.3:0'], maxConns: 1, health: { type: 'none' }, backends: [a.address] },
    ],
  })
  const metrics = async (): Promise<string> => (await request(lb.port, '/metrics')).body

  // Round-robin sends one of two connections to the refusing backend first (the other is steered
  // around it for PASSIVE_AVOID_MS): exactly one refusal, one retry, both served by a.
  t.same([await lb.who('flaky'), await lb.who('flaky')], ['a', 'a'])
  let text = await metrics()
  t.equal(sampleValue(text, 'l4lb_connect_errors_total{service="flaky",backend="127.0.0.1:1",reason="ECONNREFUSED"}'), 1, 'one refused connect')
  t.equal(sampleValue(text, 'l4lb_connect_errors_total{service="flaky",backend="127.0.0.1:1",reason="timeout"}'), 0, 'no timeout')
  t.equal(sampleValue(text, 'l4lb_retries_total{service="flaky"}'), 1, 'one retry')
  t.equal(sampleValue(text, `l4lb_connections_total{service="flaky",backend="${a.address}"}`), 2)
  t.equal(sampleValue(text, 'l4lb_accepted_total{service="flaky"}'), 2)

  // maint: the answer names the change; nothing is usable, so a client is closed with no-backend.
  const maint = await json(lb.port, `/backends/gone/${a.address}/maint`, { method: 'POST' })
  t.same(maint, { status: 200, body: { service: 'gone', backend: a.address, from: 'up', to: 'maint', active: 0 } })
  const closed = await readAll(await lb.dial('gone'))
  t.equal(closed.data.length, 0, 'a client of a service with no usable backend gets no bytes')
  text = await metrics()
  t.equal(sampleValue(text, 'l4lb_rejected_total{service="gone",reason="no-backend"}'), 1, 'counted as no-backend')
  t.equal(sampleValue(text, 'l4lb_rejected_total{service="gone",reason="max-conns"}'), 0)
  t.same(['up', 'down', 'starting', 'drain', 'maint'].map((state) => sampleValue(text, `l4lb_backend_state{service="gone",backend="${a.address}",state="${state}"}`)), [0, 0, 0, 0, 1], 'one state series is 1: maint')
  t.equal(sampleValue(text, `l4lb_backend_up{service="gone",backend="${a.address}"}`), 0)
  const status = (await json(lb.port, '/status')).body
  const gone = status.services.find((s: { name: string }) => s.name === 'gone')
  t.match(gone, { usableBackends: 0, usingBackups: false, plane: 'node', backends: [{ address: a.address, state: 'maint', lastReason: 'admin API: maint', lastError: null }] })
  t.same(await json(lb.port, '/healthz'), { status: 503, body: { healthy: false, failing: ['gone'], stopping: false, services: 3 } }, '/healthz names the service with nothing usable')
  const enable = await json(lb.port, `/backends/gone/${a.address}/enable`, { method: 'POST' })
  t.match(enable.body, { from: 'maint', to: 'up' })
  t.equal((await json(lb.port, '/healthz')).status, 200, 'and is healthy again after enable')
  t.equal(await lb.who('gone'), 'a')

  // maxConns 1: a second client while the first is open is refused at admission.
  const first = await lb.dial('small')
  t.teardown(() => first.destroy())
  t.equal(await readLine(first), 'a')
  const second = await readAll(await lb.dial('small'))
  t.equal(second.data.length, 0, 'the second client is closed unserved')
  text = await metrics()
  t.equal(sampleValue(text, 'l4lb_refused_total{service="small",proto="tcp",reason="max-conns"}'), 1, 'refused at admission: max-conns')
  t.equal(sampleValue(text, 'l4lb_rejected_total{service="small",reason="max-conns"}'), 1)
  t.equal(sampleValue(text, 'l4lb_refused_total{service="small",proto="tcp",reason="denied"}'), 0, 'the other reasons are series at 0')
  t.equal(sampleValue(text, `l4lb_active_connections{service="small",backend="${a.address}"}`), 1)

  t.test('the whole exposition passes promtool', { skip: PROMTOOL_SKIP }, async (t) => {
    const result = await promtool(text)
    t.equal(result.code, 0, result.output)
    t.equal(result.output.trim(), '', 'no lint finding')
  })
})

t.test('label values are escaped (backslash, quote, newline), so no name can break the exposition', async (t) => {
  const a = await backend(t, 'a')
  // Config validation refuses such a service name today; the exposition must not depend on it.
  const odd = 'odd"name\\with\nnewline'
  const lb = await running(t, { services: [{ name: 'plain', listen: ['127.0.0.1:0'], health: { type: 'none' }, backends: [a.address] }] },
    (c) => ({ ...c, services: c.services.map((s) => ({ ...s, name: odd })) }))
  t.equal(await lb.who(odd), 'a')
  const text = (await request(lb.port, '/metrics')).body
  t.equal(sampleValue(text, `l4lb_connections_total{service="odd\\"name\\\\with\\nnewline",backend="${a.address}"}`), 1, 'escaped as the text format says')
  t.notOk(text.split('\n').some((l) => l.startsWith('newline')), 'the newline did not start a line of its own')
  t.test('promtool parses it', { skip: PROMTOOL_SKIP }, async (t) => {
    const result = await promtool(text)
    t.equal(result.code, 0, result.output)
  })
})

t.test('a bad request gets its status and one line that says what is wrong', async (t) => {
  const a = await backend(t, 'a')
  const lb = await running(t, { services: [{ name: 'web', listen: ['127.0.0.1:0'], health: { type: 'none' }, backends: [a.address] }] })
  const cases: Array<[string, string, string | undefined, number, RegExp]> = [
    ['POST', `/backends/web/${a.address}/reboot`, undefined, 400, /^unknown action "reboot": use drain, maint, enable or weight$/],
    ['POST', '/backends/web/%E0%A4%A/drain', undefined, 400, /^bad percent-encoding in the path$/],
    ['POST', '/backends/nope/127.0.0.1:1/drain', undefined, 404, /^no service "nope"$/],
    ['POST', '/backends/web/127.0.0.1:1/drain', undefined, 404, new RegExp(`^service web has no backend "127.0.0.1:1" \\(have: ${a.address}\\)$`)],
    ['POST', `/backends/web/${a.address}/weight`, '{"weight": -1}', 400, /^weight -1: must be an integer 1-\d+ \(drain takes a backend out\)$/],
    ['POST', `/backends/web/${a.address}/weight`, '{"weight": ', 400, /^body must be JSON like \{"weight": 3\}$/],
    ['GET', '/sessions/web', undefined, 404, /^service web has no udp listener$/],
    ['GET', '/sessions/nope', undefined, 404, /^no service "nope"$/],
    ['GET', '/nope', undefined, 404, /^not found: try GET \/ .*GET \/metrics/],
    ['DELETE', '/status', undefined, 405, /^method DELETE not allowed on \/status: use GET, HEAD$/],
  ]
  for (const [method, urlPath, body, status, message] of cases) {
    const r = await json(lb.port, urlPath, { method, ...(body !== undefined ? { body } : {}) })
    t.equal(r.status, status, `${method} ${urlPath}: ${status}`)
    t.match(r.body.error, message, `${method} ${urlPath}: ${r.body.error}`)
    t.notOk(String(r.body.error).includes('\n'), 'one line')
  }
  t.equal((await json(lb.port, '/status')).body.services[0].backends[0].state, 'up', 'none of them changed anything')
})

t.test('the endpoint on a unix socket path answers as on TCP', async (t) => {
  const a = await backend(t, 'a')
  const dir = tempDir(t, 'l4lb-admin-')
  const socketPath = path.join(dir, 'admin.sock')
  const config = parseConfig({ admin: socketPath, dataPlane: 'node', services: [{ name: 'web', listen: ['127.0.0.1:0'], health: { type: 'none' }, backends: [a.address] }] })
  const runtime = await Runtime.start(config, quiet)
  const admin = (await startAdmin(config.admin, runtime, quiet))!
  t.teardown(async () => {
    await runtime.stop(0)
    await admin.close()
  })
  t.equal(admin.address(), socketPath)
  const reply = await within(5000, 'GET /healthz over the socket', new Promise<{ status: number; body: string }>((resolve, reject) => {
    http.get({ socketPath, path: '/healthz', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  }))
  t.equal(reply.status, 200)
  t.same(JSON.parse(reply.body), { healthy: true, failing: [], stopping: false, services: 1 })
})

t.test('/events: the first event is the history, and a drained backend shows in a later state event', async (t) => {
  const a = await backend(t, 'a')
  const lb = await running(t, { services: [{ name: 'web', listen: ['127.0.0.1:0'], health: { type: 'none' }, backends: [a.address] }] })
  let text = ''
  const req = http.get({ host: '127.0.0.1', port: lb.port, path: '/events', agent: false })
  t.teardown(() => req.destroy())
  const res = await within(5000, 'GET /events', new Promise<http.IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject)))
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  res.setEncoding('utf8').on('data', (c: string) => (text += c))
  await eventually('the first state event', () => /^event: state$/m.test(text))
  const events = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])
  t.same(events.slice(0, 2), ['history', 'state'], 'history first, then the state')
  const drained = await json(lb.port, `/backends/web/${a.address}/drain`, { method: 'POST' })
  t.match(drained.body, { from: 'up', to: 'drain' })
  const state = await eventually('a state event with the backend drained', () => {
    for (const m of text.matchAll(/^event: state\ndata: (.*)$/gm)) {
      const data = JSON.parse(m[1]!) as { status: { services: Array<{ backends: Array<{ state: string }> }> } }
      if (data.status.services[0]!.backends[0]!.state === 'drain') return data
    }
    return undefined
  })
  t.equal(state.status.services[0]!.backends[0]!.state, 'drain')
})
