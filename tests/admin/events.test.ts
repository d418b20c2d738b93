import t from 'tap'
import { RATE_SAMPLES, Rates } from '../../lib/admin/events.js'
import type { Runtime } from '../../lib/runtime/index.js'

/** A runtime with just what Rates reads: services → pool → backends' names and totals. */
function runtimeOf(services: Record<string, Record<string, number>>): Runtime {
  const map = new Map(Object.entries(services).map(([name, backends]) => [name, {
    name,
    pool: { backends: Object.entries(backends).map(([b, connectionsTotal]) => ({ name: b, connectionsTotal })) },
    connectionsTotal: (b: { connectionsTotal: number }) => b.connectionsTotal,
  }]))
  return { services: map } as unknown as Runtime
}

t.test('connections/s per backend: deltas of the totals, one sample a tick, 5 minutes kept', async (t) => {
  const rates = new Rates()
  rates.sample(runtimeOf({ web: { a: 100, b: 0 } }))
  t.same(rates.history(), { web: { a: [], b: [] } }, 'the first look only sets the baseline')
  rates.sample(runtimeOf({ web: { a: 103, b: 1 } }))
  rates.sample(runtimeOf({ web: { a: 103, b: 5 } }))
  t.same(rates.history(), { web: { a: [3, 0], b: [1, 4] } })
  t.same(rates.latest(), { web: { a: 0, b: 4 } })
  for (let i = 1; i <= RATE_SAMPLES + 10; i++) rates.sample(runtimeOf({ web: { a: 103 + i * 2, b: 5 } }))
  const a = rates.history().web!.a!
  t.equal(a.length, RATE_SAMPLES, 'the ring holds 5 minutes, not more')
  t.ok(a.every((v) => v === 2))
})

t.test('a reload keeps a backend\'s history by name; a removed backend or service is forgotten', async (t) => {
  const rates = new Rates()
  rates.sample(runtimeOf({ web: { a: 0, b: 0 }, dns: { c: 0 } }))
  rates.sample(runtimeOf({ web: { a: 2, b: 1 }, dns: { c: 7 } }))
  // new pool objects, same names (a reload), b removed, dns removed
  rates.sample(runtimeOf({ web: { a: 5 } }))
  t.same(rates.history(), { web: { a: [2, 3] } })
  rates.sample(runtimeOf({ web: { a: 1 } }))
  t.same(rates.latest(), { web: { a: 0 } }, 'a total that went down restarts the count instead of wrapping')
})
