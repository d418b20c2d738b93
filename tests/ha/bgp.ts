/**
 * Active-active behind BGP + ECMP (issue 15), in network namespaces this test makes:
 *
 *   client ── router ─┬─ lb1 ─┐
 *   (1,000 sources)   └─ lb2 ─┴─ be (three backends)
 *
 * BIRD 2 in lb1 and lb2 (rendered from conf/bird.conf.example) announces the VIP /32 to BIRD in
 * the router, which merges both paths into one ECMP route and hashes flows on the 5-tuple
 * (fib_multipath_hash_policy=1). The example's health gate runs beside each BIRD and follows
 * GET /healthz. Both l4lbs run Maglev over the same backends, listed in different orders.
 * Checked: every source reaches the one backend `l4lb map` predicts whichever l4lb carried each
 * of its connections; the route is withdrawn within 3 s when an l4lb loses every backend and
 * when it is killed; afterwards every source still reaches the same backend through lb2.
 * All addresses are in 198.18.0.0/15 (benchmarking) and exist only inside the namespaces.
 */
import type { Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT, eventually, runL4lb } from '../helpers/index.js'
import { Lab, PEER, renderExample, run, skipReason, type Daemon } from './netns.js'

const VIP = '198.18.100.10'
const PORT = 8000
const BACKENDS = ['198.18.10.11:9000', '198.18.10.12:9000', '198.18.10.13:9000']
const FIRST_SOURCE = '198.18.128.1'
const SOURCES = 1000
// The goal is 3 s (552–805 ms measured alone); the assertion is a behaviour bound that a loaded
// 2-core box stays inside, not the goal (speed goals live in perf/, not in tests).
const WITHDRAW_LIMIT_MS = 8000
const LBS = {
  lb1: { addr: '198.18.2.2', router: '198.18.2.1', routerIf: 'l1', beIf: 'b1', toBe: '198.18.4.1', beSide: '198.18.4.2', order: [0, 1, 2] },
  lb2: { addr: '198.18.3.2', router: '198.18.3.1', routerIf: 'l2', beIf: 'b2', toBe: '198.18.5.1', beSide: '198.18.5.2', order: [2, 0, 1] },
} as const
type LbName = keyof typeof LBS

const skip = skipReason(['bird', 'birdc', 'curl'])

/** The health gate as the example ships it (between `# gate:begin` and `# gate:end`). */
function gateScript(example: string): string {
  const lines = example.split('\n')
  const begin = lines.indexOf('# gate:begin')
  const end = lines.indexOf('# gate:end')
  if (begin < 0 || end < begin) throw new Error('conf/bird.conf.example has no gate:begin/gate:end block')
  return lines.slice(begin + 1, end).map((l) => l.replace(/^# ?/, '')).join('\n') + '\n'
}

const ROUTER_BIRD = `log stderr all;
router id 198.18.1.1;
protocol device { }
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
${(Object.keys(LBS) as LbName[]).map((n) => `protocol bgp ${n} {
  local ${LBS[n].router} as 65000; neighbor ${LBS[n].addr} as 65001; passive on;
  hold time 9; keepalive time 3;
  ipv4 { import all; export none; };
}`).join('\n')}
`

export const BGP_TITLE = 'BGP/ECMP active-active: same backend per source through either l4lb; route follows /healthz'
export const BGP_SKIP = skip

export async function bgpScenario(t: Test): Promise<void> {
  const lab = await Lab.forTest(t, 'l4hab-', ['client', 'router', 'lb1', 'lb2', 'be'])

  // --- wiring -----------------------------------------------------------------------------
  const sources: string[] = []
  const first = FIRST_SOURCE.split('.').reduce((a, o) => a * 256 + Number(o), 0)
  for (let i = 0; i < SOURCES; i++) sources.push([(first + i) >>> 24, ((first + i) >>> 16) & 255, ((first + i) >>> 8) & 255, (first + i) & 255].join('.'))
  const [client, router, be] = [lab.ns('client'), lab.ns('router'), lab.ns('be')]
  await lab.sh([
    ...lab.link('client', 'eth0', 'router', 'c0'),
    `ip -n ${client} addr add 198.18.1.2/24 dev eth0`, `ip -n ${client} route add default via 198.18.1.1`,
    `ip -n ${router} addr add 198.18.1.1/24 dev c0`, `ip -n ${router} route add 198.18.128.0/22 via 198.18.1.2`,
    lab.sysctl('router', { 'net.ipv4.ip_forward': 1, 'net.ipv4.fib_multipath_hash_policy': 1, 'net.ipv4.conf.all.rp_filter': 0 }),
    ...BACKENDS.map((b) => `ip -n ${be} addr add ${b.split(':')[0]}/32 dev lo`),
    ...(Object.keys(LBS) as LbName[]).flatMap((n) => {
      const lb = LBS[n]
      const ns = lab.ns(n)
      return [
        ...lab.link('router', lb.routerIf, n, 'eth0'), `ip -n ${router} addr add ${lb.router}/24 dev ${lb.routerIf}`,
        ...lab.link(n, 'eth1', 'be', lb.beIf), `ip -n ${be} addr add ${lb.beSide}/24 dev ${lb.beIf}`,
        `ip -n ${ns} addr add ${lb.addr}/24 dev eth0`, `ip -n ${ns} addr add ${lb.toBe}/24 dev eth1`, `ip -n ${ns} addr add ${VIP}/32 dev lo`,
        `ip -n ${ns} route add default via ${lb.router}`, `ip -n ${ns} route add 198.18.10.0/24 via ${lb.beSide}`,
      ]
    }),
  ])
  // The 1,000 client sources, in one ip process.
  await lab.ip('client', sources.map((s) => `addr add ${s}/32 dev lo`))

  // --- daemons ----------------------------------------------------------------------------
  await lab.startBackends('be', BACKENDS)
  const example = readFileSync(path.join(ROOT, 'conf', 'bird.conf.example'), 'utf8')
  writeFileSync(path.join(lab.dir, 'gate.sh'), gateScript(example))
  writeFileSync(path.join(lab.dir, 'router.conf'), ROUTER_BIRD)
  lab.start('router', 'bird-router', ['bird', '-f', '-c', path.join(lab.dir, 'router.conf'), '-s', path.join(lab.dir, 'router.ctl'), '-P', path.join(lab.dir, 'router.pid')])
  const l4lb: Partial<Record<LbName, Daemon>> = {}
  const configs: Partial<Record<LbName, string>> = {}
  for (const n of Object.keys(LBS) as LbName[]) {
    const started = lab.startL4lb(n, PORT, LBS[n].order.map((i) => BACKENDS[i]!))
    l4lb[n] = started.daemon
    configs[n] = started.config
    const conf = path.join(lab.dir, `bird-${n}.conf`)
    writeFileSync(conf, 'log stderr all;\n' + renderExample('bird.conf.example', example, [
      ['router id 198.51.100.2;', `router id ${LBS[n].addr};`],
      ['neighbor 198.51.100.1 as 65000;', `neighbor ${LBS[n].router} as 65000;`],
      ['192.0.2.10/32', `${VIP}/32`],
    ]))
    const ctl = path.join(lab.dir, `bird-${n}.ctl`)
    lab.start(n, `bird-${n}`, ['bird', '-f', '-c', conf, '-s', ctl, '-P', path.join(lab.dir, `bird-${n}.pid`)])
    lab.start(n, `gate-${n}`, ['sh', path.join(lab.dir, 'gate.sh')], { BIRD_SOCKET: ctl, INTERVAL: '0.5', HEALTHZ: 'http://127.0.0.1:9090/healthz' })
  }

  const gateways = async (): Promise<string[]> => {
    const routes = JSON.parse(await run('ip', ['-n', lab.ns('router'), '-j', 'route', 'show', `${VIP}/32`])) as Array<{ gateway?: string; nexthops?: Array<{ gateway: string }> }>
    const r = routes[0]
    if (!r) return []
    return (r.nexthops ? r.nexthops.map((h) => h.gateway) : [r.gateway!]).sort()
  }
  const both = [LBS.lb1.addr, LBS.lb2.addr].sort()
  const keysFile = path.join(lab.dir, 'sources')
  writeFileSync(keysFile, sources.join('\n') + '\n')
  // What the backends will be, from the config alone (started now: it overlaps the BGP wait).
  const mapping = runL4lb(['map', '-c', configs.lb2!, '--keys-from', keysFile], 60_000)
  const daemonsAt = Date.now()
  await eventually('the router to install the VIP over both l4lbs', async () => JSON.stringify(await gateways()) === JSON.stringify(both), 60_000, 50)
  t.comment(`ECMP route over both l4lbs after ${Date.now() - daemonsAt} ms`)

  // --- traffic ----------------------------------------------------------------------------
  const mapped = await mapping
  t.equal(mapped.code, 0, mapped.stderr)
  const predicted = new Map(mapped.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(' ') as [string, string]))
  const viaName = new Map<string, LbName>([[LBS.lb1.toBe, 'lb1'], [LBS.lb2.toBe, 'lb2']])

  type Answers = Record<string, Array<{ ok: boolean; backend?: string; via?: string; error?: string }>>
  const burst = async (): Promise<Answers> => {
    const out = await lab.exec('client', [process.execPath, PEER, 'burst', `${VIP}:${PORT}`, FIRST_SOURCE, String(SOURCES), '1'], 180_000)
    const { answers, retries } = JSON.parse(out) as { answers: Answers; retries: number }
    const errors = new Map<string, number>()
    for (const list of Object.values(answers)) for (const a of list) if (!a.ok) errors.set(a.error!, (errors.get(a.error!) ?? 0) + 1)
    t.comment(`${SOURCES} connections: ${retries} timed-out connects retried; errors left: ${[...errors].map(([e, n]) => `${e} x${n}`).join(', ') || 'none'}`)
    return answers
  }
  const one = (answers: Answers, source: string): { ok: boolean; backend?: string; via?: LbName } => {
    const a = answers[source]?.[0]
    return a ? { ok: a.ok, ...(a.backend ? { backend: a.backend } : {}), ...(a.via && viaName.has(a.via) ? { via: viaName.get(a.via)! } : {}) } : { ok: false }
  }

  const before = await burst()
  let failed = 0
  let wrongBackend = 0
  const carried = { lb1: 0, lb2: 0 }
  const carriedBy = new Map<string, LbName>()
  for (const source of sources) {
    const a = one(before, source)
    if (!a.ok) {
      failed++
      continue
    }
    if (a.backend !== predicted.get(source)) wrongBackend++
    if (a.via) {
      carried[a.via]++
      carriedBy.set(source, a.via)
    }
  }
  t.comment(`before: ${SOURCES} sources, one connection each: lb1 carried ${carried.lb1}, lb2 ${carried.lb2}; ${failed} failed`)
  t.equal(failed, 0, 'every source answered')
  t.equal(wrongBackend, 0, 'every source reached the backend `l4lb map` predicts, through lb1 or lb2')
  t.ok(carried.lb1 > SOURCES / 4 && carried.lb2 > SOURCES / 4, 'the router spreads flows over both l4lbs (each carried over a quarter)')
  t.equal(new Set(predicted.values()).size, BACKENDS.length, 'sources spread over all three backends')

  // --- lb1 loses every backend: its gate withdraws the route --------------------------------
  // Its route to the backends becomes unreachable: checks fail at once (ENETUNREACH), as when a
  // backend network goes away; fall 2 at 200 ms marks all three down.
  await lab.ip('lb1', ['route replace unreachable 198.18.10.0/24'])
  const lostAt = Date.now()
  await eventually('the route to leave lb1 (no usable backend)', async () => JSON.stringify(await gateways()) === JSON.stringify([LBS.lb2.addr]), 10_000, 20)
  const lostMs = Date.now() - lostAt
  t.comment(`lb1 lost every backend: route withdrawn after ${lostMs} ms (health checks 200ms x fall 2, gate every 500 ms)`)
  t.ok(lostMs < WITHDRAW_LIMIT_MS, `withdrawn within ${WITHDRAW_LIMIT_MS} ms of losing every backend (${lostMs} ms)`)
  await lab.ip('lb1', [`route replace 198.18.10.0/24 via ${LBS.lb1.beSide}`])
  const backAt = Date.now()
  await eventually('lb1 to be announced again', async () => JSON.stringify(await gateways()) === JSON.stringify(both), 10_000, 20)
  t.comment(`lb1 backends back: announced again after ${Date.now() - backAt} ms`)

  // --- lb1's l4lb dies ------------------------------------------------------------------------
  l4lb.lb1!.proc.kill('SIGKILL')
  const killedAt = Date.now()
  await eventually('the route to leave lb1 (l4lb killed)', async () => JSON.stringify(await gateways()) === JSON.stringify([LBS.lb2.addr]), 10_000, 20)
  const diedMs = Date.now() - killedAt
  t.comment(`lb1's l4lb SIGKILLed: route withdrawn after ${diedMs} ms`)
  t.ok(diedMs < WITHDRAW_LIMIT_MS, `withdrawn within ${WITHDRAW_LIMIT_MS} ms of l4lb dying (${diedMs} ms)`)

  const after = await burst()
  let afterFailed = 0
  let moved = 0
  let notLb2 = 0
  let wereOnLb1 = 0
  for (const source of sources) {
    const a = one(after, source)
    if (!a.ok) afterFailed++
    else if (a.backend !== predicted.get(source)) moved++
    else if (a.via !== 'lb2') notLb2++
    else if (carriedBy.get(source) === 'lb1') wereOnLb1++
  }
  t.comment(`after: ${SOURCES} sources through lb2 only (${wereOnLb1} of them came through lb1 before); ${afterFailed} failed, ${moved} reached another backend`)
  t.equal(afterFailed, 0, 'every source answered after lb1 left')
  t.equal(moved, 0, 'every source reaches the same backend as before lb1 died')
  t.equal(notLb2, 0, 'all of them through lb2')
  t.equal(wereOnLb1, carried.lb1, 'including every source lb1 carried before: same backend through the other l4lb')
}
