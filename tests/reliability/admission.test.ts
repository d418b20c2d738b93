// Issue 12 item 3: admission control at the admit stage, refusals counted per reason and logged
// through one rate-limited line per reason; the per-connection line has its own switch.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { EchoBackend, connect, eventually, readAll, readLine, spawnL4lb, whoAnswers, within, type L4lbProcess } from '../helpers/index.js'
import { PLANES, planeArgs, planeSkip } from '../helpers/planes.js'
import { UdpClient, UdpEchoBackend } from '../helpers/udp.js'

async function l4lb(t: { teardown(fn: () => unknown): void }, args: string[]): Promise<{ lb: L4lbProcess; admin: string }> {
  const lb = await spawnL4lb([...args, '--admin', '127.0.0.1:0'])
  t.teardown(() => lb.stop())
  const admin = (await lb.waitForLog('admin line', (l) => l.msg === 'admin endpoint listening')).admin as string
  return { lb, admin }
}

async function refusedCount(admin: string, reason: string, proto = 'tcp'): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text()
  const m = new RegExp(`^l4lb_refused_total\\{service="default",proto="${proto}",reason="${reason}"\\} (\\d+)$`, 'm').exec(text)
  return m ? Number(m[1]) : -1
}

/** Connects from `from` and reports whether the backend greeted (served) or the socket closed empty. */
async function served(port: number, from: string): Promise<boolean> {
  const socket = await within(5000, 'connect', connect(port, '127.0.0.1', from))
  try {
    return (await readLine(socket, 3000).catch(() => '')) !== ''
  } finally {
    socket.destroy()
  }
}

for (const plane of PLANES) {
  t.test(`${plane} plane: --deny wins over --allow; refusals are counted and logged once a second with a suppressed count`, { skip: planeSkip(plane) }, async (t) => {
    const backend = await new EchoBackend('alpha').start()
    t.teardown(() => backend.stop())
    const { lb, admin } = await l4lb(t, [...planeArgs(plane), '-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', '--allow', '127.0.0.0/8', '--deny', '127.7.0.0/16'])
    const port = lb.ports[0]!
    t.equal(await served(port, '127.8.0.1'), true, 'an allowed source is served')
    const started = Date.now()
    for (let i = 0; i < 40; i++) {
      const s = await connect(port, '127.0.0.1', '127.7.0.1')
      const { data } = await within(3000, 'close', readAll(s))
      t.equal(data.length, 0)
    }
    const elapsedMs = Date.now() - started
    await eventually('40 denials counted', async () => (await refusedCount(admin, 'denied')) === 40)
    t.equal(await refusedCount(admin, 'not-allowed'), 0, 'other reasons exported as zero')
    const lines = lb.logs.filter((l) => l.msg === 'connection refused' && l.reason === 'denied')
    t.ok(lines.length >= 1 && lines.length <= Math.ceil(elapsedMs / 1000) + 1, `40 denials in ${elapsedMs} ms make ${lines.length} line(s), at most one a second`)
    t.equal(backend.accepted, 1, 'no denied connection reached the backend')
    // One more a second later: its line carries how many were dropped since the last line, so
    // lines plus suppressed counts account for every denial.
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await connect(port, '127.0.0.1', '127.7.0.2').then((s) => readAll(s))
    await eventually('41 denials counted', async () => (await refusedCount(admin, 'denied')) === 41)
    const all = await eventually('a line after the pause', () => {
      const found = lb.logs.filter((l) => l.msg === 'connection refused' && l.reason === 'denied')
      return found.length > lines.length ? found : undefined
    })
    const accounted = all!.reduce((n, l) => n + 1 + Number(l.suppressed), 0)
    t.equal(accounted, 41, `${all!.length} lines + suppressed counts = every denial`)
  })
}

for (const plane of PLANES) {
  t.test(`${plane} plane: --max-conns-per-ip: a source at its limit is refused, others are served, and a close frees a slot`, { skip: planeSkip(plane) }, async (t) => {
    const backend = await new EchoBackend('alpha').start()
    t.teardown(() => backend.stop())
    const { lb, admin } = await l4lb(t, [...planeArgs(plane), '-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', '--max-conns-per-ip', '2'])
    const port = lb.ports[0]!
    const held = [await connect(port, '127.0.0.1', '127.9.0.1'), await connect(port, '127.0.0.1', '127.9.0.1')]
    t.teardown(() => held.forEach((s) => s.destroy()))
    for (const s of held) t.equal(await readLine(s), 'alpha')
    t.equal(await served(port, '127.9.0.1'), false, 'a third from the same source is refused')
    t.equal(await refusedCount(admin, 'max-conns-per-ip'), 1)
    t.equal(await served(port, '127.9.0.2'), true, 'another source is served')
    held[0]!.destroy()
    await eventually('the slot to free', () => served(port, '127.9.0.1'), 5000, 100)
  })
}

for (const plane of PLANES) {
  t.test(`${plane} plane: --rate-per-ip: a burst beyond N/s from one source is refused, another source is not`, { skip: planeSkip(plane) }, async (t) => {
    const backend = await new EchoBackend('alpha').start()
    t.teardown(() => backend.stop())
    const { lb, admin } = await l4lb(t, [...planeArgs(plane), '-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none', '--rate-per-ip', '5'])
    const port = lb.ports[0]!
    const results: boolean[] = []
    const started = Date.now()
    for (let i = 0; i < 15; i++) results.push(await served(port, '127.10.0.1'))
    const elapsedMs = Date.now() - started
    const ok = results.filter(Boolean).length
    // A bucket of 5 refills at 5/s: at most 5 plus what refilled while the tries ran.
    const most = 5 + Math.ceil((elapsedMs / 1000) * 5)
    t.ok(ok >= 5 && ok <= most && ok < 15, `${ok} of 15 served in ${elapsedMs} ms (at most ${most})`)
    t.equal(await refusedCount(admin, 'rate-per-ip'), 15 - ok, 'every refusal counted')
    t.equal(await served(port, '127.10.0.2'), true, 'another source has its own bucket')
  })
}

for (const plane of PLANES) {
  t.test(`${plane} plane: a reload changes the lists and limits; one that keeps the limits keeps the per-source counts`, { skip: planeSkip(plane) }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-admit-reload-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const backend = await new EchoBackend('alpha').start()
    t.teardown(() => backend.stop())
    const file = join(dir, 'l4lb.yaml')
    const config = (deny: string, backendLines: string[]): string => [
      `dataPlane: ${plane}`, 'threads: 1',
      'services:', '  - name: default', '    listen: ["127.0.0.1:0"]', '    health: { type: none }',
      `    deny: ["${deny}"]`, '    maxConnsPerIp: 1', '    backends:', ...backendLines.map((b) => `      - "${b}"`),
      'admin: { listen: "127.0.0.1:0" }', '',
    ].join('\n')
    writeFileSync(file, config('127.14.0.0/16', [backend.address]))
    const { lb, admin } = await l4lb(t, ['-c', file])
    const port = lb.ports[0]!
    t.equal(await served(port, '127.14.0.1'), false, 'denied before the reload')
    const held = await connect(port, '127.0.0.1', '127.15.0.1')
    t.teardown(() => held.destroy())
    t.equal(await readLine(held), 'alpha', 'another source is served')
    // The same limits with another backend: a pool change, and a reload that keeps admission.
    writeFileSync(file, config('127.14.0.0/16', [backend.address, '127.0.0.1:1']))
    lb.proc.kill('SIGHUP')
    await lb.waitForLog('reloaded', (l) => l.msg === 'reloaded')
    t.equal(await served(port, '127.15.0.1'), false, 'the open connection still counts after a reload that keeps the limits')
    t.equal(await refusedCount(admin, 'max-conns-per-ip'), 1, 'and its refusal counted')
    // New lists: what was denied is served, and what was served is denied.
    writeFileSync(file, config('127.16.0.0/16', [backend.address]))
    lb.proc.kill('SIGHUP')
    await eventually('the second reload', () => lb.logs.filter((l) => l.msg === 'reloaded').length === 2)
    t.equal(await served(port, '127.14.0.1'), true, 'no longer denied')
    t.equal(await served(port, '127.16.0.1'), false, 'newly denied')
    t.equal(await refusedCount(admin, 'denied'), 2, 'refusals count across reloads that change the settings (a counter never goes back)')
  })
}

t.test('udp: --udp-max-sessions-per-ip drops a second flow from the same address only', async (t) => {
  const backend = await new UdpEchoBackend('u1').start()
  t.teardown(() => backend.stop())
  const { lb, admin } = await l4lb(t, ['-l', '127.0.0.1:0', '--protocol', 'udp', '-b', backend.address, '--check', 'none', '--udp-max-sessions-per-ip', '1'])
  const port = lb.udpPorts[0]!
  const first = await UdpClient.bound('127.11.0.1')
  const second = await UdpClient.bound('127.11.0.1')
  const other = await UdpClient.bound('127.11.0.2')
  t.teardown(() => Promise.all([first, second, other].map((c) => c.close())))
  t.equal((await first.ask('one', port)).toString(), 'u1:one', 'the first flow is served')
  t.equal(await second.ask('two', port, '127.0.0.1', 500).catch(() => null), null, 'a second flow from the same address is dropped')
  t.equal((await other.ask('three', port)).toString(), 'u1:three', 'another address is served')
  t.equal(await refusedCount(admin, 'max-sessions-per-ip', 'udp'), 1)
})

for (const plane of PLANES) {
  t.test(`${plane} plane: --log-connections errors keeps failures and state changes, drops ordinary close lines; none drops both kinds of close line`, { skip: planeSkip(plane) }, async (t) => {
    const backend = await new EchoBackend('alpha').start()
    t.teardown(() => backend.stop())
    for (const mode of ['errors', 'none'] as const) {
      const { lb } = await l4lb(t, [...planeArgs(plane), '-l', '127.0.0.1:0', '-b', backend.address, '-b', '127.0.0.1:1', '--balance', 'round-robin', '--check', 'none', '--retries', '0', '--log-connections', mode])
      const port = lb.ports[0]!
      const answers = [await whoAnswers(port).catch(() => 'refused'), await whoAnswers(port).catch(() => 'refused')]
      t.same(answers.sort(), ['alpha', 'refused'], 'one served, one failed to connect')
      await new Promise((resolve) => setTimeout(resolve, 300))
      const closes = lb.logs.filter((l) => l.msg === 'connection closed')
      if (mode === 'errors') t.same(closes.map((l) => l.reason), ['connect-failed'], 'only the failure is logged')
      else t.same(closes, [], 'no close line at all')
      t.ok(lb.logs.some((l) => l.msg === 'listening'), 'other lines are still there')
    }
  })
}

t.test('per-backend maxConns: excess clients wait in order, are served as slots free, and time out with a counted reason', async (t) => {
  const backend = await new EchoBackend('alpha').start()
  t.teardown(() => backend.stop())
  const { lb, admin } = await l4lb(t, ['-l', '127.0.0.1:0', '-b', `${backend.address},max-conns=2`, '--check', 'none', '--queue-timeout', '1500ms'])
  const port = lb.ports[0]!
  const held = [await connect(port), await connect(port)]
  t.teardown(() => held.forEach((s) => s.destroy()))
  for (const s of held) t.equal(await readLine(s), 'alpha')
  // Two more wait; the status shows them queued and the backend still at 2.
  const waiting = [await connect(port), await connect(port)]
  t.teardown(() => waiting.forEach((s) => s.destroy()))
  const status = async (): Promise<{ activeConnections: number; queued: number; maxConns: number }> =>
    ((await (await fetch(`http://${admin}/status`)).json()) as { services: Array<{ backends: Array<{ activeConnections: number; queued: number; maxConns: number }> }> }).services[0]!.backends[0]!
  await eventually('two queued', async () => (await status()).queued === 2)
  t.equal((await status()).activeConnections, 2, 'never more than maxConns at the backend')
  t.equal(backend.accepted, 2)
  // A slot frees: the first in line gets it, the second still waits.
  const order: number[] = []
  const lines = waiting.map((s, i) => readLine(s, 5000).then((l) => (order.push(i), l)))
  held[0]!.destroy()
  t.equal(await lines[0], 'alpha', 'the first waiter is served when a slot frees')
  t.same(order, [0], 'in order')
  // Nothing frees for the second: it times out after --queue-timeout with its reason counted.
  await t.rejects(lines[1]!, 'the second waiter is closed at the queue timeout')
  const closed = await lb.waitForLog('queue-timeout line', (l) => l.msg === 'connection closed' && l.reason === 'queue-timeout')
  t.equal(closed.backend, backend.address)
  const metrics = await (await fetch(`http://${admin}/metrics`)).text()
  t.match(metrics, /l4lb_rejected_total\{service="default",reason="queue-timeout"\} 1/)
  t.equal(backend.accepted, 3, 'the backend never saw more than its slots')
})

t.test('per-backend maxConns with no --queue-timeout: a stateless pool skips a full backend, a full pool refuses at once', async (t) => {
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  const { lb, admin } = await l4lb(t, ['-l', '127.0.0.1:0', '-b', `${a.address},max-conns=1`, '-b', `${b.address},max-conns=1`, '--balance', 'round-robin', '--check', 'none'])
  const port = lb.ports[0]!
  const first = await connect(port)
  const second = await connect(port)
  t.teardown(() => [first, second].forEach((s) => s.destroy()))
  t.same([await readLine(first), await readLine(second)].sort(), ['a', 'b'], 'each backend got one')
  const third = await connect(port)
  const { data } = await within(3000, 'refusal', readAll(third))
  t.equal(data.length, 0, 'the third is closed at once')
  const metrics = await (await fetch(`http://${admin}/metrics`)).text()
  t.match(metrics, /l4lb_rejected_total\{service="default",reason="backend-full"\} 1/)
})
