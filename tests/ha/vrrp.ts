/**
 * Active-passive with keepalived (issue 15), in network namespaces this test makes: client, lb1,
 * lb2 and be (three backends) on one bridge that itself lives in a namespace of its own.
 * keepalived in lb1 (priority 150) and lb2 (100) is rendered from conf/keepalived.conf.example
 * and tracks GET /healthz. A client connects to the VIP in a loop; lb1's l4lb is SIGKILLed: the
 * VIP moves to lb2 and new connections succeed within 3 s, to the same backend (Maglev on both,
 * backends listed in different orders). lb1's l4lb comes back: with the example's `nopreempt`
 * the VIP stays on lb2 and no connection fails. All addresses are in 198.18.0.0/24
 * (benchmarking) and exist only inside the namespaces.
 */
import type { Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT, eventually } from '../helpers/index.js'
import { Lab, PEER, renderExample, run, skipReason, type Daemon } from './netns.js'

const VIP = '198.18.0.10'
const PORT = 8000
const LOOP_INTERVAL_MS = 50
// The goal is 3 s (1.1 s measured on a quiet box: keepalived's advert_int and the check's
// interval); the assertion is a behaviour bound, not the goal: at load 7 on the 2-core box one
// run took 3.6 s. The measured time is printed as a comment on every run.
const FAILOVER_LIMIT_MS = 8000
const BACKENDS = ['198.18.0.11:9000', '198.18.0.12:9000', '198.18.0.13:9000']
const LBS = {
  lb1: { addr: '198.18.0.1', priority: 150, order: [0, 1, 2] },
  lb2: { addr: '198.18.0.2', priority: 100, order: [1, 2, 0] },
} as const
type LbName = keyof typeof LBS

const skip = skipReason(['keepalived', 'curl'])

interface Attempt {
  at: number
  ok: boolean
  backend?: string
  via?: string
  error?: string
}

export const VRRP_TITLE = 'keepalived pair: SIGKILL the active l4lb, the VIP moves and new connections succeed within seconds (goal 3 s, measured and printed); nopreempt keeps it there'
export const VRRP_SKIP = skip

export async function vrrpScenario(t: Test): Promise<void> {
  const startedAt = Date.now()
  const phase = (what: string): void => void t.comment(`+${Date.now() - startedAt} ms: ${what}`)
  const lab = await Lab.forTest(t, 'l4hav-', ['br', 'client', 'lb1', 'lb2', 'be'])

  // --- one LAN: a bridge inside its own namespace ----------------------------------------
  const br = lab.ns('br')
  await lab.sh([
    `ip -n ${br} link add br0 type bridge`, `ip -n ${br} link set br0 up`,
    ...['client', 'lb1', 'lb2', 'be'].flatMap((n) => [...lab.link('br', `p-${n}`, n, 'eth0'), `ip -n ${br} link set p-${n} master br0`]),
    `ip -n ${lab.ns('client')} addr add 198.18.0.100/24 dev eth0`,
    ...BACKENDS.map((b) => `ip -n ${lab.ns('be')} addr add ${b.split(':')[0]}/24 dev eth0`),
    ...(Object.keys(LBS) as LbName[]).map((n) => `ip -n ${lab.ns(n)} addr add ${LBS[n].addr}/24 dev eth0`),
  ])
  phase('namespaces wired')
  // --- daemons ----------------------------------------------------------------------------
  await lab.startBackends('be', BACKENDS)
  const l4lb: Partial<Record<LbName, Daemon>> = {}
  const startL4lb = (n: LbName): Daemon => (l4lb[n] = lab.startL4lb(n, PORT, LBS[n].order.map((i) => BACKENDS[i]!)).daemon)
  const healthy = (n: LbName): Promise<boolean> => lab.exec(n, ['curl', '-fs', '-o', '/dev/null', '-m', '2', 'http://127.0.0.1:9090/healthz']).then(() => true, () => false)
  for (const n of Object.keys(LBS) as LbName[]) startL4lb(n)
  const client = lab.start('client', 'client', [process.execPath, PEER, 'loop', `${VIP}:${PORT}`, String(LOOP_INTERVAL_MS)])
  await Promise.all((Object.keys(LBS) as LbName[]).map((n) => eventually(`${n}'s l4lb to be healthy`, () => healthy(n), 60_000, 100)))

  phase('both l4lbs healthy')
  const example = readFileSync(path.join(ROOT, 'conf', 'keepalived.conf.example'), 'utf8')
  const keepalived: Partial<Record<LbName, Daemon>> = {}
  for (const n of Object.keys(LBS) as LbName[]) {
    const conf = path.join(lab.dir, `keepalived-${n}.conf`)
    writeFileSync(conf, renderExample('keepalived.conf.example', example, [['192.0.2.10/24 dev eth0', `${VIP}/24 dev eth0`], ['priority 150', `priority ${LBS[n].priority}`]]))
    keepalived[n] = lab.start(n, `keepalived-${n}`, ['keepalived', '--dont-fork', '--log-console', '--log-detail', '--no-syslog', '--vrrp',
      '-f', conf, '-p', path.join(lab.dir, `keepalived-${n}.pid`), '-r', path.join(lab.dir, `vrrp-${n}.pid`)])
  }
  const holds = async (n: LbName): Promise<boolean> => (await run('ip', ['-n', lab.ns(n), '-o', 'addr', 'show', 'dev', 'eth0'])).includes(` ${VIP}/`)
  const keepalivedAt = Date.now()
  await eventually('lb1 to hold the VIP', async () => (await holds('lb1')) && !(await holds('lb2')), 30_000, 100)
  t.comment(`lb1 became MASTER ${Date.now() - keepalivedAt} ms after keepalived started`)

  // --- a client connects in a loop (from now: Node starts slowly on a shared box) -------------
  const attempts = (): Attempt[] => client.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Attempt)
  const viaName = new Map<string, LbName>([[LBS.lb1.addr, 'lb1'], [LBS.lb2.addr, 'lb2']])
  await eventually('10 answers through lb1', async () => attempts().filter((a) => a.ok && a.via === LBS.lb1.addr).length >= 10, 60_000)
  phase('client answered through lb1')
  const backendBefore = new Set(attempts().filter((a) => a.ok).map((a) => a.backend))
  t.equal(backendBefore.size, 1, 'one client address, one backend')

  // --- the active l4lb dies ----------------------------------------------------------------
  const keepalivedLb1 = keepalived.lb1!
  const logOffset = keepalivedLb1.output().length
  const killedAt = Date.now()
  l4lb.lb1!.proc.kill('SIGKILL')
  const [movedMs, firstOk] = await Promise.all([
    eventually('the VIP to move to lb2', async () => (await holds('lb2')) && !(await holds('lb1')), 15_000, 100).then(() => {
      // Restore lb1 as soon as it has let go: a Node start takes seconds on a shared box.
      startL4lb('lb1')
      return Date.now() - killedAt
    }),
    eventually('an answer through lb2', async () => attempts().find((a) => a.ok && a.at >= killedAt && a.via === LBS.lb2.addr), 15_000, 20),
  ])
  const failoverMs = firstOk.at - killedAt
  const failed = attempts().filter((a) => !a.ok && a.at >= killedAt && a.at < firstOk.at)
  const errors = [...new Set(failed.map((a) => a.error))].join(', ')
  t.comment(`SIGKILL lb1's l4lb: VIP on lb2 after ${movedMs} ms; first new connection through lb2 ${failoverMs} ms after the kill; ${failed.length} connects failed (${errors || 'none'}) at one attempt per ${LOOP_INTERVAL_MS} ms`)
  t.ok(failoverMs < FAILOVER_LIMIT_MS, `new connections succeed within ${FAILOVER_LIMIT_MS} ms (${failoverMs} ms)`)
  t.ok(failed.length <= Math.ceil(FAILOVER_LIMIT_MS / LOOP_INTERVAL_MS), `failed connects are bounded by the failover window (${failed.length})`)
  await eventually('10 more answers after the failover', async () => attempts().filter((a) => a.at > firstOk.at).length >= 10, 15_000)
  const afterFailover = attempts().filter((a) => a.at > firstOk.at)
  t.ok(afterFailover.every((a) => a.ok && a.via === LBS.lb2.addr), 'after the failover every connection succeeds, through lb2')
  t.same(new Set(afterFailover.map((a) => a.backend)), backendBefore, 'the client reaches the same backend through lb2 (Maglev on both)')

  // --- lb1's l4lb comes back: nopreempt ------------------------------------------------------
  await eventually('lb1\'s l4lb healthy again', () => healthy('lb1'), 60_000, 100)
  const restoredAt = Date.now()
  // lb1's keepalived leaves FAULT once its check has passed `rise` times; it must come back as BACKUP.
  await eventually('lb1\'s keepalived to leave FAULT', async () => /Entering FAULT STATE[\s\S]*Entering BACKUP STATE/.test(keepalivedLb1.output().slice(logOffset)), 15_000, 50)
  const backupAt = Date.now()
  // Three advertisement intervals: a preempting lb1 would have taken the address by then.
  await eventually('three advert intervals to pass', async () => Date.now() - backupAt >= 3000, 5000, 100)
  t.ok(await holds('lb2'), 'nopreempt: the VIP stays on lb2 after lb1 is healthy again')
  t.notOk(await holds('lb1'), 'lb1 waits as BACKUP')
  const afterRestore = attempts().filter((a) => a.at >= restoredAt)
  t.ok(afterRestore.length > 0 && afterRestore.every((a) => a.ok && viaName.get(a.via!) === 'lb2'), `no connection failed or moved while lb1 came back (${afterRestore.length} attempts)`)
  t.comment(`lb1 healthy again: its keepalived entered BACKUP ${backupAt - restoredAt} ms later; the VIP stayed on lb2 (nopreempt), ${afterRestore.filter((a) => !a.ok).length} of ${afterRestore.length} connects failed`)
  client.proc.stdin!.end()
  phase('done')
}
