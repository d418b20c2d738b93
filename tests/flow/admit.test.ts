import t from 'tap'
import { Admission, REFUSAL_REASONS, sourceKey, type AdmissionSettings, type RefusalReason } from '../../lib/flow/admit.js'

// One scenario is an operator's settings and a script of events on a fake clock:
// `+ip` a new connection (expected result after '='), `-ip` one of its connections ends,
// `@ms` moves the clock.
interface Scenario {
  name: string
  settings: AdmissionSettings
  udp?: boolean
  script: string[]
}

const scenarios: Scenario[] = [
  { name: 'no settings: everyone admitted', settings: {}, script: ['+10.0.0.1=ok', '+2001:db8::1=ok', '+::ffff:10.0.0.1=ok'] },
  { name: 'deny list: a denied source is refused, others pass', settings: { deny: ['10.0.0.0/8'] }, script: ['+10.1.2.3=denied', '+11.0.0.1=ok'] },
  { name: 'deny wins over allow', settings: { allow: ['10.0.0.0/8'], deny: ['10.9.0.0/16'] }, script: ['+10.1.0.1=ok', '+10.9.0.1=denied', '+192.0.2.1=not-allowed'] },
  { name: 'allow list only: everyone else not-allowed', settings: { allow: ['192.0.2.0/24', '2001:db8::/32'] }, script: ['+192.0.2.9=ok', '+192.0.3.9=not-allowed', '+2001:db8::7=ok', '+2001:db9::7=not-allowed'] },
  { name: 'IPv4-mapped IPv6 is matched as IPv4', settings: { deny: ['203.0.113.0/24'] }, script: ['+::ffff:203.0.113.5=denied', '+::ffff:198.51.100.5=ok'] },
  { name: 'a mapped deny block matches plain IPv4', settings: { deny: ['::ffff:203.0.113.0/120'] }, script: ['+203.0.113.5=denied', '+203.0.114.5=ok'] },
  { name: 'IPv6 blocks do not match IPv4 and back', settings: { allow: ['::/0'] }, script: ['+::1=ok', '+127.0.0.1=not-allowed'] },
  { name: 'max-conns: the one over the limit is refused, a release makes room', settings: { maxConns: 2 }, script: ['+1.1.1.1=ok', '+1.1.1.2=ok', '+1.1.1.3=max-conns', '-1.1.1.1', '+1.1.1.3=ok'] },
  { name: 'max-conns-per-ip: per source, others unaffected', settings: { maxConnsPerIp: 2 }, script: ['+1.1.1.1=ok', '+1.1.1.1=ok', '+1.1.1.1=max-conns-per-ip', '+1.1.1.2=ok', '-1.1.1.1', '+1.1.1.1=ok'] },
  { name: 'max-conns-per-ip counts mapped and plain IPv4 as one source', settings: { maxConnsPerIp: 1 }, script: ['+10.0.0.1=ok', '+::ffff:10.0.0.1=max-conns-per-ip', '-::ffff:10.0.0.1', '+::ffff:10.0.0.1=ok'] },
  { name: 'max-conns-per-ip for IPv6 sources', settings: { maxConnsPerIp: 1 }, script: ['+2001:db8::1=ok', '+2001:db8::1=max-conns-per-ip', '+2001:db8::2=ok'] },
  { name: 'rate-per-ip: 3/s admits a burst of 3, then one per 333 ms', settings: { ratePerIp: 3 }, script: ['+1.1.1.1=ok', '+1.1.1.1=ok', '+1.1.1.1=ok', '+1.1.1.1=rate-per-ip', '+1.1.1.2=ok', '@334', '+1.1.1.1=ok', '+1.1.1.1=rate-per-ip'] },
  { name: 'a release gives no token back (rate counts new connections)', settings: { ratePerIp: 1 }, script: ['+1.1.1.1=ok', '-1.1.1.1', '+1.1.1.1=rate-per-ip', '@1000', '+1.1.1.1=ok'] },
  { name: 'a denied connection spends no token', settings: { ratePerIp: 1, maxConnsPerIp: 1 }, script: ['+1.1.1.1=ok', '+1.1.1.1=max-conns-per-ip', '@1000', '-1.1.1.1', '+1.1.1.1=ok'] },
  { name: 'order: deny before max-conns before per-ip before rate', settings: { deny: ['9.9.9.9'], maxConns: 1, maxConnsPerIp: 1, ratePerIp: 1 }, script: ['+9.9.9.9=denied', '+1.1.1.1=ok', '+9.9.9.9=denied', '+1.1.1.1=max-conns', '-1.1.1.1', '+1.1.1.1=rate-per-ip'] },
  { name: 'UDP: sessions per source and in all, named as sessions', udp: true, settings: { udpMaxSessions: 3, udpMaxSessionsPerIp: 2, maxConns: 1, maxConnsPerIp: 1 }, script: ['+1.1.1.1=ok', '+1.1.1.1=ok', '+1.1.1.1=max-sessions-per-ip', '+1.1.1.2=ok', '+1.1.1.3=max-sessions', '-1.1.1.2', '+1.1.1.3=ok'] },
  { name: 'UDP: the rate applies to new sessions', udp: true, settings: { ratePerIp: 2, deny: ['10.0.0.0/8'] }, script: ['+1.1.1.1=ok', '+1.1.1.1=ok', '+1.1.1.1=rate-per-ip', '+10.0.0.1=denied'] },
]

t.test('admission: allow/deny, global and per-source limits, rate (fake clock)', async (t) => {
  for (const s of scenarios) {
    let now = 0
    const admission = s.udp ? Admission.forUdp(s.settings, { now: () => now }) : Admission.forTcp(s.settings, { now: () => now })
    const expected = new Map<RefusalReason, number>()
    const got: string[] = []
    for (const step of s.script) {
      if (step.startsWith('@')) {
        now = Number(step.slice(1))
      } else if (step.startsWith('-')) {
        admission.release(step.slice(1))
      } else {
        const [ip, want] = step.slice(1).split('=') as [string, string]
        const result = admission.admit(ip) ?? 'ok'
        got.push(`+${ip}=${result}`)
        if (want !== 'ok') expected.set(want as RefusalReason, (expected.get(want as RefusalReason) ?? 0) + 1)
      }
    }
    t.same(got, s.script.filter((x) => x.startsWith('+')), s.name)
    for (const r of REFUSAL_REASONS) {
      if (admission.refused[r] !== (expected.get(r) ?? 0)) t.fail(`${s.name}: refused.${r} = ${admission.refused[r]}, expected ${expected.get(r) ?? 0}`)
    }
  }
})

t.test('active counts follow admit and release; the per-source table empties', async (t) => {
  const admission = Admission.forTcp({ maxConnsPerIp: 10 })
  for (let i = 0; i < 100; i++) t.equal(admission.admit(`10.0.${i >> 8}.${i & 255}`), null)
  t.equal(admission.admit('10.0.0.0'), null)
  t.equal(admission.active, 101)
  t.equal(admission.activeOf('10.0.0.0'), 2)
  t.equal(admission.activeOf('::ffff:10.0.0.0'), 2, 'the mapped form is the same source')
  admission.release('10.0.0.0')
  for (let i = 0; i < 100; i++) admission.release(`10.0.${i >> 8}.${i & 255}`)
  t.equal(admission.active, 0)
  t.equal(admission.activeOf('10.0.0.0'), 0)
  admission.release('10.0.0.0')
  t.equal(admission.active, 0, 'an extra release never goes negative')
})

t.test('every reason is counted under its own name, zero before any refusal', async (t) => {
  const admission = Admission.forTcp({})
  t.same(Object.keys(admission.refused), [...REFUSAL_REASONS])
  t.ok(Object.values(admission.refused).every((n) => n === 0))
})

t.test('source keys: IPv4 and its mapped form are one int32 key, IPv6 keeps its text', async (t) => {
  t.equal(sourceKey('10.0.0.1'), 0x0a000001)
  t.equal(sourceKey('::ffff:10.0.0.1'), 0x0a000001)
  t.equal(sourceKey('255.255.255.255'), -1)
  t.equal(sourceKey('2001:db8::1'), '2001:db8::1')
})

t.test('the rate table is bounded: sources that fit are limited, more than fit are forgotten LRU-first', async (t) => {
  let now = 0
  const fits = Admission.forTcp({ ratePerIp: 1 }, { now: () => now, maxSources: 100 })
  let admitted = 0
  for (let i = 0; i < 1000; i++) if (fits.admit(`192.0.2.${i % 50}`) === null) admitted++
  t.equal(admitted, 50, '50 sources in a 100-slot table: one each, the rest refused')
  t.equal(fits.refused['rate-per-ip'], 950)
  now = 1000
  t.equal(fits.admit('192.0.2.1'), null, 'admitted again once its bucket refilled')

  const spills = Admission.forTcp({ ratePerIp: 1 }, { now: () => now, maxSources: 100 })
  admitted = 0
  for (let i = 0; i < 1000; i++) if (spills.admit(`192.0.2.${i % 250}`) === null) admitted++
  t.equal(spills.rateTable!.size, 100, 'never more than maxSources tracked')
  t.equal(admitted, 1000, '250 sources cycling through 100 slots are each evicted before they return')
  t.equal(spills.rateTable!.evictions, 900)
})

t.test('bad CIDRs in settings are refused when the admission is built', async (t) => {
  t.throws(() => Admission.forTcp({ allow: ['10.0.0.0/33'] }), /prefix length/)
  t.throws(() => Admission.forTcp({ deny: ['nope'] }), /not an IPv4 or IPv6 CIDR block/)
})
