import t from 'tap'
import { spawnSync } from 'node:child_process'
import type { Socket } from 'node:net'
import { EchoBackend, connect, eventually, readLine, spawnL4lb, within } from '../helpers/index.js'
import { PLANES, planeSkip } from '../helpers/planes.js'
import { fdCount, source } from './helpers.js'

// Three rounds of far more clients than the descriptors allow (each proxied connection needs 2):
// l4lb must neither crash nor wedge, must serve again as soon as descriptors free up, and must
// give every descriptor back.
const NOFILE = 64
const CLIENTS = 150
const ROUNDS = 3

// The native plane runs with two engine threads: each has its own SO_REUSEPORT listener, and a
// thread out of descriptors must retry its listener when another thread's close frees one (the
// clients here have their own 127.x source addresses, so reuseport cannot hand one our port).
for (const plane of PLANES) {
  t.test(`${plane} plane: fd exhaustion under prlimit --nofile=${NOFILE}: ${ROUNDS} rounds of ${CLIENTS} clients, served after each, no descriptor leaked`, { skip: planeSkip(plane) }, async (t) => {
    const backend = await new EchoBackend('a').start()
    t.teardown(() => backend.stop())
    const planeArgs = plane === 'native' ? ['--data-plane', 'native', '--threads', '2'] : ['--data-plane', 'node']
    const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', ...planeArgs])
    t.teardown(() => lb.stop())
    const port = lb.ports[0]!
    const pid = lb.proc.pid!
    // The limit is set once l4lb listens: what start-up opens (the ESM loader reads modules in
    // parallel) depends on the module count, not on what this test is about.
    const limited = spawnSync('prlimit', [`--pid=${pid}`, `--nofile=${NOFILE}:${NOFILE}`])
    t.equal(limited.status, 0, `prlimit --pid: ${String(limited.stderr)}`)

    const serve = async (from: string): Promise<string> => {
      const s = await within(5000, `connect from ${from}`, connect(port, '127.0.0.1', from))
      try {
        const greeting = await readLine(s, 5000)
        s.write('ping\n')
        return `${greeting} ${await readLine(s, 5000)}`
      } finally {
        s.destroy()
      }
    }

    t.equal(await serve(source(60, 0)), 'a ping', 'served before the storm')
    await eventually('the backend side to close', () => backend.sockets.size === 0, 5000)
    const baseline = await fdCount(pid)
    t.ok(baseline > 0 && baseline < NOFILE, `baseline ${baseline} descriptors`)

    let servedDuringStorms = 0
    for (let round = 0; round < ROUNDS; round++) {
      const held: Socket[] = []
      // Connects complete in the kernel (backlog 4096) whatever l4lb can accept.
      const settled = await Promise.allSettled(
        Array.from({ length: CLIENTS }, (_, i) => within(5000, 'connect', connect(port, '127.0.0.1', source(61 + round, i)))),
      )
      for (const s of settled) {
        if (s.status !== 'fulfilled') continue
        // a client l4lb had to close may see a reset: that is allowed, only a hang or a crash is not
        s.value.on('error', () => {})
        held.push(s.value)
      }
      t.ok(held.length > NOFILE, `round ${round + 1}: ${held.length} clients connected`)
      // Some get their greeting, the rest are closed by l4lb or wait in the backlog.
      const greetings = await Promise.allSettled(held.map((s) => readLine(s, 1500)))
      servedDuringStorms += greetings.filter((g) => g.status === 'fulfilled' && g.value === 'a').length
      t.equal(lb.proc.exitCode, null, `round ${round + 1}: still running while out of descriptors`)
      t.ok(await fdCount(pid) >= NOFILE - 8, `round ${round + 1}: descriptors used up (${await fdCount(pid)} of ${NOFILE})`)
      for (const s of held) s.destroy()
      await eventually(`round ${round + 1}: descriptors back to the baseline`, async () => (await fdCount(pid)) <= baseline + 2, 10_000, 50)
      await eventually(`round ${round + 1}: the backend side to close`, () => backend.sockets.size === 0, 10_000)
      // and it serves again at once, every time
      for (let i = 0; i < 5; i++) t.equal(await serve(source(65, round * 5 + i)), 'a ping', `round ${round + 1}: served after the storm (${i + 1}/5)`)
    }
    t.ok(servedDuringStorms > 0, `${servedDuringStorms} clients proxied while descriptors ran out`)
    t.equal(lb.proc.exitCode, null, 'never exited')
    const warnings = lb.logs.filter((l) => l.code === 'EMFILE' || l.code === 'ENFILE')
    t.ok(warnings.length <= ROUNDS * 6, `descriptor warnings rate-limited: ${warnings.length} lines`)
    t.equal(lb.stderr(), '', 'nothing on stderr (no stack trace)')
  })
}
