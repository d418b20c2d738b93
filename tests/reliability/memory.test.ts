import t from 'tap'
import type { Socket } from 'node:net'
import { EchoBackend, connect, eventually, rssBytes, spawnL4lb, within } from '../helpers/index.js'
import { PLANES, planeArgs, planeSkip } from '../helpers/planes.js'
import { source } from './helpers.js'

// Issue 12 item 5: after a crowd of connections closes, l4lb gives the memory back (V8's
// memory-reducing collection, then malloc_trim) once the count has settled, and says so in one
// line. perf/run idle measures how much comes back; this shows that it happens, on both planes.
const CROWD = 1200

for (const [i, plane] of PLANES.entries()) {
  t.test(`${plane} plane: memory reclaimed once ${CROWD} connections closed`, { skip: planeSkip(plane) }, async (t) => {
    const backend = await new EchoBackend('a').start()
    t.teardown(() => backend.stop())
    const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', ...planeArgs(plane)])
    t.teardown(() => lb.stop())
    const port = lb.ports[0]!
    const crowd: Socket[] = []
    t.teardown(() => crowd.forEach((s) => s.destroy()))
    for (let n = 0; n < CROWD; n += 100) {
      const batch = await Promise.all(Array.from({ length: 100 }, (_, k) => within(5000, 'connect', connect(port, '127.0.0.1', source(80 + i, n + k)))))
      for (const s of batch) s.on('error', () => {})
      crowd.push(...batch)
    }
    await eventually(`${CROWD} connections at the backend`, () => backend.sockets.size === CROWD, 15_000)
    // l4lb samples its open count once a second: let it see the crowd
    await new Promise((resolve) => setTimeout(resolve, 2500))
    const peakRss = await rssBytes(lb.proc.pid!)
    t.notOk(lb.logs.some((l) => l.msg === 'memory reclaimed after connections closed'), 'nothing reclaimed while they are open')
    for (const s of crowd) s.destroy()
    const line = await lb.waitForLog('the reclaim line', (l) => l.msg === 'memory reclaimed after connections closed', 20_000)
    t.equal(line.open, 0, 'it ran once the crowd had gone')
    t.equal(line.v8, true, "V8's memory-reducing collection ran")
    t.equal(typeof line.malloc, 'boolean', 'malloc_trim was asked where the addon is built')
    t.ok(typeof line.pauseMs === 'number' && typeof line.rssAfterMb === 'number', `paused ${String(line.pauseMs)} ms, RSS ${String(line.rssBeforeMb)} → ${String(line.rssAfterMb)} MB`)
    t.ok((line.rssAfterMb as number) < (line.rssBeforeMb as number), 'RSS fell')
    t.ok((line.rssAfterMb as number) * 1048576 < peakRss, `below the RSS with ${CROWD} open (${(peakRss / 1048576).toFixed(1)} MB)`)
  })
}
