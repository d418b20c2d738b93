import t from 'tap'
import { ReclaimTrigger } from '../../lib/runtime/reclaim.js'

// The trigger sees the open count every sample; it fires when at least `minClosed` closed, at
// most half the peak remains, the count stopped falling, and the last reclaim is `spacingMs` old.
t.test('reclaim trigger: enough closed, at most half left, settled, spaced', async (t) => {
  const trigger = new ReclaimTrigger(1000, 60_000)
  const feed = (counts: number[], startMs: number): boolean[] => counts.map((n, i) => trigger.sample(n, startMs + i * 2000))
  t.same(feed([0, 500, 900, 0, 0], 0), [false, false, false, false, false], 'fewer than 1000 ever closed: never')
  t.same(feed([3000, 1600, 1600], 10_000), [false, false, false], 'more than half the peak still open: never')
  t.same(feed([1000, 200, 150], 20_000), [false, false, false], 'still falling: not yet')
  t.same(feed([150], 26_000), [true], 'settled at 150 of a 3000 peak: now')
  t.same(feed([150, 150], 28_000), [false, false], 'once: the peak is now what is open')
  t.same(feed([2500, 100, 100], 30_000), [false, false, false], 'a new crowd closed within 60 s of the last reclaim: not yet')
  t.same(feed([100], 86_000), [true], 'and once the spacing has passed')
})

t.test('reclaim trigger: a count that climbs again is not "settled" in between', async (t) => {
  const trigger = new ReclaimTrigger(1000, 0)
  t.equal(trigger.sample(2000, 0), false)
  t.equal(trigger.sample(100, 1), false, 'fell this sample')
  t.equal(trigger.sample(120, 2), true, 'rose a little: settled, the crowd is gone')
  t.equal(trigger.sample(120, 3), false, 'peak reset to 120')
})
