// The prober against real loopback sockets: the operator's stories, end to end.
import t from 'tap'
import { Prober, realClock, type CheckOptions, type CheckResult, type Clock, type HealthEvent, type TimerHandle } from '../../lib/health/index.js'
import { eventually } from '../helpers/index.js'
import { EventLog, TestServer } from './helpers.js'

const SSL_REQUEST = Buffer.from('0000000804d2162f', 'hex')

function targetOf(id: number, port: number) {
  return { id, name: `127.0.0.1:${port}`, host: '127.0.0.1', port }
}

/** The real clock, counting live timers so a test can assert stop() left none. */
class CountingClock implements Clock {
  readonly live = new Set<TimerHandle>()
  now(): number {
    return realClock.now()
  }
  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const handle: TimerHandle = realClock.setTimeout(() => {
      this.live.delete(handle)
      fn()
    }, delayMs)
    this.live.add(handle)
    return handle
  }
  clearTimeout(handle: TimerHandle): void {
    this.live.delete(handle)
    realClock.clearTimeout(handle)
  }
}

/** Events with the history as it stood when each was emitted. */
function recorder() {
  const log = new EventLog()
  const seen: Array<{ event: HealthEvent; history: readonly CheckResult[] }> = []
  let prober: Prober | undefined
  const listener = (event: HealthEvent): void => {
    seen.push({ event, history: prober?.history(event.backendId) ?? [] })
    log.listener(event)
  }
  return { log, seen, listener, attach: (p: Prober) => (prober = p) }
}

/** The results since the last one with the other outcome: the current run. */
function currentRun(history: readonly CheckResult[]): CheckResult[] {
  const last = history.at(-1)
  if (!last) return []
  let i = history.length - 1
  while (i > 0 && history[i - 1]?.ok === last.ok) i--
  return history.slice(i)
}

const fast: Partial<CheckOptions> = { intervalMs: 25, timeoutMs: 500, rise: 2, fall: 3 }

t.test('a backend that stops listening is taken out after exactly 3 failed checks, and comes back after exactly 2 passing ones', async (t) => {
  const server = new TestServer()
  const port = await server.listen()
  const rec = recorder()
  const clock = new CountingClock()
  const prober = new Prober({ type: 'tcp', ...fast }, [targetOf(1, port)], rec.listener, { clock })
  rec.attach(prober)
  t.teardown(() => prober.stop())
  t.teardown(() => server.close())

  prober.start()
  await rec.log.next((e) => e.to === 'up', 3000, 'the first check to pass')
  t.equal(prober.isUp(1), true)

  await server.close()
  const down = await rec.log.next((e) => e.to === 'down', 3000, 'the down event')
  t.equal(down.reason, '3 consecutive failed checks (last: ECONNREFUSED)')
  t.equal(down.lastError, 'ECONNREFUSED')
  const atDown = rec.seen.at(-1)?.history ?? []
  const failures = currentRun(atDown)
  t.equal(failures.length, 3, 'exactly fall failed checks in history at the down event')
  t.ok(failures.every((r) => !r.ok && r.error === 'ECONNREFUSED'))
  t.equal(atDown[atDown.length - 4]?.ok, true, 'preceded by a pass: not taken out before the 3rd')
  t.equal(prober.isUp(1), false)

  await server.listen(port) // the same port again
  const up = await rec.log.next((e) => e.to === 'up', 3000, 'the up event')
  t.equal(up.reason, '2 consecutive passed checks')
  const atUp = rec.seen.at(-1)?.history ?? []
  const passes = currentRun(atUp)
  t.equal(passes.length, 2, 'exactly rise passed checks in history at the up event')
  t.equal(atUp[atUp.length - 3]?.ok, false, 'preceded by a failure')

  t.same(
    rec.log.events.map((e) => `${e.from}→${e.to}`),
    ['starting→up', 'up→down', 'down→up'],
  )
  await prober.stop()
  t.equal(clock.live.size, 0, 'stop() cleared every timer')
})

t.test('a flapping backend (answers alternately right and wrong) never changes state with rise=2/fall=3', async (t) => {
  const server = new TestServer((socket, n) => {
    socket.once('data', () => socket.write(n % 2 === 0 ? '-ERR not ready\r\n' : '+PONG\r\n'))
  })
  const port = await server.listen()
  const log = new EventLog()
  const prober = new Prober(
    { type: 'send-expect', send: Buffer.from('PING\r\n'), expect: Buffer.from('+PONG'), initialState: 'fully-up', ...fast },
    [targetOf(1, port)],
    log.listener,
  )
  t.teardown(() => server.close())
  prober.start()
  await eventually('10 checks', () => prober.history(1).length >= 10, 5000, 5)
  await prober.stop()
  const history = prober.history(1)
  t.same(
    history.map((r) => r.ok),
    history.map((_, i) => i % 2 === 1),
    'results alternate',
  )
  t.equal(history[0]?.error, 'expect mismatch: got "-ERR not ready\\r\\n"')
  t.same(log.events, [], 'no state change')
  t.equal(prober.isUp(1), true)
})

t.test("send-expect: a backend answering 'N' to the PostgreSQL SSLRequest is up; one answering garbage is down", async (t) => {
  const postgres = new TestServer((socket) => {
    socket.once('data', (b: Buffer) => socket.write(b.equals(SSL_REQUEST) ? 'N' : 'E'))
  })
  const garbage = new TestServer((socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 400 Bad Request\r\n\r\n'))
  })
  const [pgPort, garbagePort] = [await postgres.listen(), await garbage.listen()]
  t.teardown(() => postgres.close())
  t.teardown(() => garbage.close())
  const log = new EventLog()
  const prober = new Prober(
    { type: 'send-expect', send: SSL_REQUEST, expect: [Buffer.from('S'), Buffer.from('N')], ...fast },
    [targetOf(1, pgPort), targetOf(2, garbagePort)],
    log.listener,
  )
  prober.start()
  const [pg, bad] = await Promise.all([
    log.next((e) => e.backendId === 1, 3000, 'postgres first check'),
    log.next((e) => e.backendId === 2, 3000, 'garbage first check'),
  ])
  await prober.stop()
  t.same([pg.to, pg.reason], ['up', 'first check passed'])
  t.same([bad.to, bad.reason], ['down', 'first check failed (expect mismatch: got "HTTP/1.1 400 Bad Request\\r\\n\\r\\n")'])
})

t.test('http: a Patroni leader (GET /primary → 200) is up, a replica (→ 503) is down', async (t) => {
  const patroni = (leader: boolean) =>
    new TestServer((socket) => {
      let head = ''
      socket.on('data', (c: Buffer) => {
        head += c.toString('latin1')
        if (!head.includes('\r\n\r\n')) return
        const primary = head.startsWith('GET /primary ')
        const status = primary && leader ? '200 OK' : '503 Service Unavailable'
        socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\n\r\n`)
      })
    })
  const leader = patroni(true)
  const replica = patroni(false)
  const [leaderPort, replicaPort] = [await leader.listen(), await replica.listen()]
  t.teardown(() => leader.close())
  t.teardown(() => replica.close())
  const log = new EventLog()
  const prober = new Prober({ type: 'http', httpPath: '/primary', ...fast }, [targetOf(1, leaderPort), targetOf(2, replicaPort)], log.listener)
  prober.start()
  await eventually('three checks each', () => prober.history(1).length >= 3 && prober.history(2).length >= 3, 3000, 5)
  await prober.stop()
  t.equal(prober.isUp(1), true)
  t.equal(prober.isUp(2), false)
  t.same(
    prober.history(2).map((r) => r.error),
    prober.history(2).map(() => 'http status 503'),
  )
  t.same(
    log.events.map((e) => [e.backendId, e.to]).sort(),
    [
      [1, 'up'],
      [2, 'down'],
    ],
  )
})

t.test('stop() cancels an in-flight check and leaves no socket or timer behind', async (t) => {
  const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
  const baseline = sockets()
  const silent = new TestServer() // accepts and never answers: the check stays in flight
  const port = await silent.listen()
  const clock = new CountingClock()
  const prober = new Prober(
    { type: 'send-expect', send: Buffer.from('PING\r\n'), expect: Buffer.from('+PONG'), timeoutMs: 60_000, intervalMs: 20 },
    [targetOf(1, port)],
    () => {},
    { clock },
  )
  prober.start()
  await eventually('the check to connect', () => silent.sockets.size === 1, 3000, 5)
  t.ok(sockets() >= baseline + 2, 'check socket and server socket are open')
  const stopped = Date.now()
  await prober.stop()
  t.ok(Date.now() - stopped < 1000, 'stop() does not wait for the check timeout')
  t.ok(sockets() <= baseline + silent.sockets.size, 'the check socket is closed when stop() resolves')
  t.equal(clock.live.size, 0, 'no timers left')
  t.same(prober.history(1), [], 'a cancelled check is not a result')
  await silent.close()
  await eventually('the server side to close', () => sockets() <= baseline, 3000, 5)
  t.equal(sockets(), baseline)
})
