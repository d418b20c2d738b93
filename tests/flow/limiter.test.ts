import t from 'tap'
import { TokenBuckets } from '../../lib/flow/limiter.js'

// A source's story as a script: `take@ms` attempts at a time on a fake clock, and whether each
// was admitted ('+') or refused ('-').
interface Scenario {
  name: string
  ratePerSec: number
  burst?: number
  /** [time ms, expected] per attempt, from one source. */
  steps: Array<[number, '+' | '-']>
}

const scenarios: Scenario[] = [
  { name: 'burst = rate: 5/s admits 5 at once, refuses the 6th', ratePerSec: 5, steps: [[0, '+'], [0, '+'], [0, '+'], [0, '+'], [0, '+'], [0, '-']] },
  { name: 'one token back every 1/rate seconds', ratePerSec: 5, steps: [[0, '+'], [0, '+'], [0, '+'], [0, '+'], [0, '+'], [199, '-'], [200, '+'], [200, '-'], [400, '+']] },
  { name: 'a full second refills the whole burst, never more', ratePerSec: 3, steps: [[0, '+'], [0, '+'], [0, '+'], [0, '-'], [10_000, '+'], [10_000, '+'], [10_000, '+'], [10_000, '-']] },
  { name: 'steady at the rate is always admitted', ratePerSec: 10, steps: Array.from({ length: 30 }, (_, i) => [i * 100, '+'] as [number, '+']) },
  { name: 'twice the rate: half refused once the burst is spent', ratePerSec: 2, steps: [[0, '+'], [0, '+'], [250, '-'], [500, '+'], [750, '-'], [1000, '+'], [1250, '-']] },
  { name: 'refused attempts cost nothing', ratePerSec: 1, steps: [[0, '+'], [100, '-'], [200, '-'], [300, '-'], [1000, '+']] },
  { name: 'fractional rate: 0.5/s is one every 2 s (burst 1)', ratePerSec: 0.5, steps: [[0, '+'], [1000, '-'], [1999, '-'], [2000, '+']] },
  { name: 'burst larger than rate', ratePerSec: 1, burst: 3, steps: [[0, '+'], [0, '+'], [0, '+'], [0, '-'], [1000, '+'], [1000, '-']] },
  { name: 'burst 1 with rate 10: no two within 100 ms (nginx burst=0)', ratePerSec: 10, burst: 1, steps: [[0, '+'], [50, '-'], [100, '+'], [150, '-']] },
  { name: 'a clock stepping back earns no tokens', ratePerSec: 1, steps: [[5000, '+'], [1000, '-'], [5999, '-'], [6000, '+']] },
]

t.test('token bucket per source: admit/refuse sequences on a fake clock', async (t) => {
  for (const s of scenarios) {
    let now = 0
    const buckets = new TokenBuckets({ ratePerSec: s.ratePerSec, burst: s.burst, now: () => now })
    const got: string[] = []
    for (const [at] of s.steps) {
      now = at
      got.push(buckets.take(0x7f000001) ? '+' : '-')
    }
    t.equal(got.join(''), s.steps.map(([, e]) => e).join(''), s.name)
  }
})

t.test('sources are independent: one spending its burst costs another nothing', async (t) => {
  let now = 0
  const buckets = new TokenBuckets({ ratePerSec: 2, now: () => now })
  t.ok(buckets.take('2001:db8::1'))
  t.ok(buckets.take('2001:db8::1'))
  t.notOk(buckets.take('2001:db8::1'), 'first source spent')
  t.ok(buckets.take('2001:db8::2'), 'second source has its own bucket')
  t.ok(buckets.take(1), 'an IPv4 key too')
  now = 500
  t.ok(buckets.take('2001:db8::1'), 'refilled by one after 500 ms')
  t.equal(buckets.size, 3)
})

t.test('the table is bounded: the least recently used source is evicted, a recent one kept', async (t) => {
  let now = 0
  const buckets = new TokenBuckets({ ratePerSec: 1, maxSources: 3, now: () => now })
  t.ok(buckets.take(1))
  t.ok(buckets.take(2))
  t.ok(buckets.take(3))
  t.notOk(buckets.take(1), 'source 1 is empty (and now the most recent)')
  t.ok(buckets.take(4), 'a fourth source evicts the least recent: 2')
  t.equal(buckets.size, 3)
  t.equal(buckets.evictions, 1)
  t.notOk(buckets.has(2), '2 was evicted')
  t.ok(buckets.has(1), '1 was kept: it was used after 2')
  t.notOk(buckets.take(1), 'and still remembers it spent its token')
  t.ok(buckets.take(2), 'an evicted source starts over with a full bucket')
  t.notOk(buckets.has(3), 'which evicted 3')
})

t.test('the bound holds under churn: 3× more sources than slots, size stays at the bound, evictions count the rest', async (t) => {
  t.equal(new TokenBuckets({ ratePerSec: 1 }).maxSources, 1 << 20, 'default bound 2^20 sources (HAProxy stick-table size 1m)')
  // A smaller bound keeps this quick; perf/flow-memory.mjs fills the default one.
  let now = 0
  const max = 1 << 16
  const buckets = new TokenBuckets({ ratePerSec: 1, maxSources: max, now: () => now })
  const n = 3 * max
  let refused = 0
  for (let i = 0; i < n; i++) {
    now = i / 1000
    if (!buckets.take(i | 0)) refused++
  }
  t.equal(refused, 0, 'every new source is admitted on its first connection')
  t.equal(buckets.size, max)
  t.equal(buckets.evictions, n - max)
  t.ok(buckets.has(n - 1) && buckets.has(n - max) && !buckets.has(n - max - 1) && !buckets.has(0), 'exactly the newest max sources kept')
})

t.test('bad options are refused with a message naming the value', async (t) => {
  t.throws(() => new TokenBuckets({ ratePerSec: 0 }), /ratePerSec must be > 0, got 0/)
  t.throws(() => new TokenBuckets({ ratePerSec: Number.NaN }), /ratePerSec/)
  t.throws(() => new TokenBuckets({ ratePerSec: 5, burst: 0.5 }), /burst must be ≥ 1, got 0.5/)
  t.throws(() => new TokenBuckets({ ratePerSec: 5, maxSources: 0 }), /maxSources/)
  t.equal(new TokenBuckets({ ratePerSec: 0.2 }).burst, 1, 'a rate under 1/s still admits one')
})
