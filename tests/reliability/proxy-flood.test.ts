import t from 'tap'
import { spawn } from 'node:child_process'
import path from 'node:path'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { EchoBackend, ROOT, childEnv, connect, eventually, nodeCommand, readLine, spawnL4lb, stopChild, within } from '../helpers/index.js'
import { fdCount, source } from './helpers.js'

// An --accept-proxy listener under attack: 1,000 connections of garbage instead of a PROXY
// header and 500 slowloris clients (a byte every 200 ms, never a whole header, reconnecting when
// cut off), while a legitimate upstream balancer keeps sending proper headers. Its round trips
// must all succeed during the attack, no attack byte may reach the backend, every attacker must
// be cut off within the header deadline, and l4lb must give its descriptors back afterwards.
const GARBAGE = 1000
const SLOWLORIS = 500
const HEADER_DEADLINE_MS = 1000
const ATTACK_MS = 4000

t.test(`${GARBAGE} garbage connections and ${SLOWLORIS} slowloris against --accept-proxy: a legitimate client is served throughout`, async (t) => {
  const backend = await new EchoBackend('a').start()
  t.teardown(() => backend.stop())
  const lb = await spawnL4lb([
    '-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none',
    '--accept-proxy', '127.0.0.0/8', '--accept-proxy-timeout', `${HEADER_DEADLINE_MS}ms`,
  ])
  t.teardown(() => lb.stop())
  const port = lb.ports[0]!
  const pid = lb.proc.pid!
  const baseline = await fdCount(pid)

  let attacking = true
  const open = new Set<Socket>()
  t.teardown(() => {
    for (const s of open) s.destroy()
  })
  const track = (s: Socket): Socket => {
    open.add(s)
    s.on('error', () => {})
    s.once('close', () => open.delete(s))
    return s
  }

  // The legitimate upstream: one long-lived connection doing round trips, and a new connection
  // per round, each with a proper header.
  const legitimate = async (): Promise<{ rounds: number; failures: string[]; served: number }> => {
    const failures: string[] = []
    let served = 0
    const header = (n: number): string => `PROXY TCP4 198.51.100.7 192.0.2.1 ${10_000 + n} 80\r\n`
    const long = track(await connect(port, '127.0.0.1', source(70, 0)))
    long.write(header(0))
    if ((await readLine(long, 5000).catch((e: Error) => e.message)) !== 'a') failures.push('long-lived: no greeting')
    else served++
    let rounds = 0
    while (attacking) {
      rounds++
      try {
        long.write(`ping ${rounds}\n`)
        const echo = await readLine(long, 5000)
        if (echo !== `ping ${rounds}`) failures.push(`long-lived round ${rounds}: got ${JSON.stringify(echo)}`)
      } catch (err) {
        failures.push(`long-lived round ${rounds}: ${(err as Error).message}`)
        break
      }
      try {
        const s = track(await within(5000, 'a new legitimate connection', connect(port, '127.0.0.1', source(70, 1 + (rounds % 200)))))
        s.write(`${header(rounds)}hello ${rounds}\n`)
        const first = await readLine(s, 5000)
        if (first === 'a') served++
        const lines = [first, await readLine(s, 5000)]
        if (lines.join('|') !== `a|hello ${rounds}`) failures.push(`new connection ${rounds}: got ${JSON.stringify(lines)}`)
        s.destroy()
      } catch (err) {
        failures.push(`new connection ${rounds}: ${(err as Error).message}`)
      }
      await sleep(50)
    }
    long.destroy()
    return { rounds, failures, served }
  }

  // The attack runs in its own process (attacker.ts says why).
  const [cmd, ...args] = nodeCommand(path.join(ROOT, 'dist/tests/reliability/attacker.js'), String(port), String(GARBAGE), String(SLOWLORIS), String(ATTACK_MS), String(HEADER_DEADLINE_MS))
  const attacker = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() })
  const attackerExited = new Promise<number | null>((resolve) => attacker.once('exit', (code) => resolve(code)))
  t.teardown(() => stopChild(attacker, attackerExited))
  let report = ''
  let attackerErrors = ''
  attacker.stdout.setEncoding('utf8').on('data', (c: string) => (report += c))
  attacker.stderr.setEncoding('utf8').on('data', (c: string) => (attackerErrors += c))

  const legit = legitimate()
  const code = await within(60_000, 'the attacker to finish', attackerExited)
  attacking = false
  const { rounds, failures, served } = await within(20_000, 'the legitimate client to finish', legit)
  t.equal(code, 0, `the attacker ran to its end ${attackerErrors}`)
  const seen = JSON.parse(report) as { garbageNotClosed: string[]; garbageNotClosedCount: number; garbageRepliedTo: number; slowCut: number; slowLongestMs: number; slowMedianMs: number; slowReplies: number }
  t.comment(report.trim())

  t.same(failures, [], `every legitimate round trip succeeded during the attack (${rounds} rounds)`)
  t.ok(rounds >= 5, `${rounds} legitimate rounds ran during the attack`)
  t.same(seen.garbageNotClosed, [], `every garbage connection was closed by l4lb (${seen.garbageNotClosedCount} were not)`)
  t.equal(seen.garbageRepliedTo, 0, 'no garbage connection got a byte back')
  t.ok(seen.slowCut >= SLOWLORIS, `${seen.slowCut} slowloris connections were cut off by l4lb`)
  t.equal(seen.slowReplies, 0, 'no slowloris connection got a byte back')
  // Their lifetimes are measured in the attacker's own (busy) loop, so the median, not the worst.
  t.ok(seen.slowMedianMs < HEADER_DEADLINE_MS + 2000, `slowloris connections lasted ${seen.slowMedianMs} ms at the median, ${seen.slowLongestMs} ms at most (deadline ${HEADER_DEADLINE_MS} ms)`)
  // Only the legitimate connections ever reached the backend.
  t.equal(backend.accepted, served, 'no attacking connection reached the backend')
  t.equal(lb.proc.exitCode, null, 'still running')
  await eventually('l4lb to give its descriptors back', async () => (await fdCount(pid)) <= baseline + 2, 10_000, 100)
  // and serves as before
  const after = track(await connect(port, '127.0.0.1', source(70, 250)))
  after.write('PROXY TCP4 198.51.100.8 192.0.2.1 4242 80\r\nafter\n')
  t.equal(await readLine(after), 'a')
  t.equal(await readLine(after), 'after')
  after.destroy()
  t.equal(lb.stderr(), '', 'nothing on stderr')
})
