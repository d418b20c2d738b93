// The send-expect check against a real PostgreSQL: the SSLRequest is answered 'S' or 'N' by
// every PostgreSQL since 7.2, before authentication, so the check needs no credentials.
// Skips cleanly when no PostgreSQL server binaries are installed.
import t from 'tap'
import { Prober } from '../../lib/health/index.js'
import { EventLog } from '../health/helpers.js'
import { TestPostgres, postgresUnavailable } from '../helpers/postgres.js'

const SSL_REQUEST = Buffer.from('0000000804d2162f', 'hex')
const unavailable = await postgresUnavailable()

if (unavailable) {
  t.plan(0, unavailable)
} else {
  t.test('a real PostgreSQL answers the SSLRequest check; stopping it takes the backend out after fall checks', async (t) => {
    const pg = await new TestPostgres().start()
    t.teardown(() => pg.stop())
    const port = pg.port

    const log = new EventLog()
    const prober = new Prober(
      { type: 'send-expect', send: SSL_REQUEST, expect: [Buffer.from('S'), Buffer.from('N')], intervalMs: 50, timeoutMs: 2000, rise: 2, fall: 3 },
      [{ id: 1, name: `127.0.0.1:${port}`, host: '127.0.0.1', port }],
      log.listener,
    )
    t.teardown(() => prober.stop())
    prober.start()
    const up = await log.next((e) => e.to === 'up', 10_000, 'PostgreSQL to pass the check')
    t.equal(up.reason, 'first check passed')
    t.equal(prober.isUp(1), true)

    // Wait from before the stop: pg_ctl -w returns only after its own polling, and 3 failed
    // checks 50 ms apart can mark the backend down before it does.
    const downEvent = log.next((e) => e.to === 'down', 10_000, 'the down event')
    await pg.stop()
    const down = await downEvent
    // A check caught mid-shutdown may fail otherwise; once stopped, connects are refused.
    t.match(down.reason, /^3 consecutive failed checks \(last: /)
    t.equal(prober.history(1).at(-1)?.error, 'ECONNREFUSED')
    await prober.stop()
  })
}
