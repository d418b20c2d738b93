// l4lb in front of two real PostgreSQL servers: psql lands on a backend, pgbench runs through the
// balancer without a failed or aborted client, and the send-expect SSLRequest check keeps a
// stopped server out of rotation.
import t from 'tap'
import { spawnL4lb } from '../helpers/index.js'
import { TestPostgres, postgresUnavailable } from '../helpers/postgres.js'
import { PLANES, planeArgs, planeSkip } from '../helpers/planes.js'

const unavailable = await postgresUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  for (const plane of PLANES) {
    t.test(`${plane} plane: psql and pgbench through l4lb to real PostgreSQL servers`, { skip: planeSkip(plane) }, async (t) => {
      // Teardown first: if one fails to start, the other is still stopped.
      const pgs = [new TestPostgres(), new TestPostgres()]
      t.teardown(() => Promise.all(pgs.map((p) => p.stop())))
      await Promise.all(pgs.map((p) => p.start()))
      const lb = await spawnL4lb([
        '-l', '127.0.0.1:0', ...pgs.flatMap((p) => ['-b', `127.0.0.1:${p.port}`]),
        '--check', 'send-expect', '--check-send', '0x0000000804d2162f', '--check-expect', 'S', '--check-expect', 'N',
        '--check-interval', '200ms', '--fall', '2', ...planeArgs(plane),
      ])
      t.teardown(() => lb.stop())
      const port = lb.ports[0]!
      const psql = (sql: string) => pgs[0]!.client('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-Atc', sql])

      const served = Number((await psql('select inet_server_port()')).stdout.trim())
      t.ok(pgs.some((p) => p.port === served), `psql reached a backend (port ${served})`)
      // Same source address, same backend (Maglev on the client IP).
      for (let i = 0; i < 5; i++) t.equal(Number((await psql('select inet_server_port()')).stdout.trim()), served)

      const target = pgs.find((p) => p.port === served)!
      await target.client('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-i', '-s', '1', '-q', 'postgres'])
      const bench = await target.client('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-c', '8', '-j', '2', '-T', '5', 'postgres'])
      const out = bench.stdout + bench.stderr
      t.match(out, /number of failed transactions: 0 /, 'no failed transactions')
      t.notMatch(out, /aborted/i, 'no aborted client')
      const tps = /tps = ([0-9.]+)/.exec(out)?.[1]
      t.ok(Number(tps) > 0, `pgbench through l4lb: ${tps} tps`)

      // Stop the server psql was using: the check takes it out and psql lands on the other one.
      await target.stop()
      await lb.waitForLog('backend down', (l) => l.msg === 'backend state changed' && l.to === 'down', 10_000)
      const other = pgs.find((p) => p !== target)!
      t.equal(Number((await other.client('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-Atc', 'select inet_server_port()'])).stdout.trim()), other.port, 'failover to the other server')
    })
  }
}
