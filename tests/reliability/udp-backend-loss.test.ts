import t from 'tap'
import { eventually, spawnL4lb } from '../helpers/index.js'
import { UdpClient, UdpEchoBackend } from '../helpers/udp.js'
import { pooled, source } from './helpers.js'

// 500 UDP clients from their own addresses over three backends; one backend dies. Only its
// clients may move (to a live backend, on their next datagram); every other client keeps the
// backend it had — Maglev's minimal disruption plus the session table, end to end.
const CLIENTS = 500

t.test(`${CLIENTS} UDP clients, one backend killed: only its clients move, every other keeps its backend`, async (t) => {
  const backends = await Promise.all(['a', 'b', 'c'].map((n) => new UdpEchoBackend(n).start()))
  t.teardown(() => Promise.all(backends.map((b) => b.stop())))
  const lb = await spawnL4lb([
    '-l', '127.0.0.1:0', '--protocol', 'udp', '--balance', 'maglev',
    '--check', 'udp', '--check-send', 'ping', ...backends.flatMap((b) => ['--check-expect', `${b.name}:ping`]),
    // generous: a live backend must not be marked down by a slow check on a loaded box
    '--check-interval', '200ms', '--check-timeout', '1s', '--rise', '1', '--fall', '3', '--udp-idle-timeout', '1500ms',
    ...backends.flatMap((b) => ['-b', b.address]),
  ])
  t.teardown(() => lb.stop())
  await lb.waitForLog('udp listening', (l) => l.msg === 'listening' && l.proto === 'udp')
  const port = lb.udpPorts[0]!
  await eventually('every backend up', () => lb.logs.filter((l) => l.msg === 'backend state changed' && l.to === 'up').length === backends.length, 5000)

  const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => UdpClient.bound(source(90, i))))
  t.teardown(() => Promise.all(clients.map((c) => c.close())))

  /**
   * Asks until answered (UDP may lose or delay a datagram on a loaded box); the answering
   * backend's name. A late reply to an earlier try of the same question counts; replies to an
   * earlier question are skipped.
   */
  const ask = async (c: UdpClient, what: string): Promise<string> => {
    const deadline = Date.now() + 8000
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      await c.send(`${what}-${attempt}`, port)
      const tryUntil = Math.min(deadline, Date.now() + 500)
      while (Date.now() < tryUntil) {
        let reply: string
        try {
          reply = (await c.next(tryUntil - Date.now())).toString()
        } catch {
          break
        }
        const [name, payload] = reply.split(':')
        if (payload?.startsWith(`${what}-`)) return name!
      }
    }
    return 'no answer'
  }

  const before = await pooled(clients, 100, (c) => ask(c, 'before'))
  const spread = before.reduce<Record<string, number>>((m, n) => ({ ...m, [n]: (m[n] ?? 0) + 1 }), {})
  t.notOk(spread['no answer'], `every client answered before the kill: ${JSON.stringify(spread)}`)
  t.ok(backends.every((b) => (spread[b.name] ?? 0) > CLIENTS / 10), 'every backend has a share of the clients')

  const victim = backends[1]!
  await victim.stop()
  await lb.waitForLog('the victim marked down', (l) => l.msg === 'backend state changed' && l.to === 'down' && l.backend === victim.address, 10_000)

  const after = await pooled(clients, 100, (c) => ask(c, 'after'))
  const bystanderIndex = before.flatMap((name, i) => (name !== victim.name ? [i] : []))
  const bystanders = bystanderIndex.map((i) => ({ name: before[i]!, now: after[i]! }))
  const movedBystanders = bystanders.filter((x) => x.now !== x.name)
  t.equal(movedBystanders.length, 0, `0 of ${bystanders.length} bystanders moved (${JSON.stringify(movedBystanders.slice(0, 3))})`)
  const orphans = before.map((name, i) => ({ name, now: after[i]! })).filter((x) => x.name === victim.name)
  t.ok(orphans.length > 0, `${orphans.length} clients were on the killed backend`)
  t.same(orphans.filter((x) => x.now === victim.name || x.now === 'no answer'), [], 'each of them is answered by a live backend')

  // Once every session has idled out, new sessions must land where the old ones were: the
  // table is a pure function of the live backends (a modulo hash would move about half).
  await eventually('every session to idle out', () => lb.logs.filter((l) => l.msg === 'session closed' && l.reason === 'idle-timeout').length >= CLIENTS, 15_000, 100)
  const fresh = await pooled(clients, 100, (c) => ask(c, 'fresh'))
  const movedFresh = bystanderIndex.map((i) => ({ name: before[i]!, fresh: fresh[i]! })).filter((x) => x.fresh !== x.name)
  t.equal(movedFresh.length, 0, `new sessions: 0 of ${bystanders.length} bystanders moved (${JSON.stringify(movedFresh.slice(0, 3))})`)
  const flapped = lb.logs.filter((l) => l.msg === 'backend state changed' && l.to === 'down' && l.backend !== victim.address)
  t.same(flapped.map((l) => l.backend), [], 'no live backend was marked down (else its clients moved for that reason)')
  t.equal(lb.proc.exitCode, null, 'still running')
})
