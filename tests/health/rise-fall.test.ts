import t from 'tap'
import { initialHealth, isTransitional, isUp, maxHealth, step, type CounterStart } from '../../lib/health/index.js'

// 'P' = passed check, 'F' = failed check. `changes` lists the 1-based positions in the sequence
// at which up-ness flips; `end` is the final up-ness.
interface Scenario {
  name: string
  rise: number
  fall: number
  start: CounterStart
  seq: string
  changes: number[]
  end: boolean
}

const scenarios: Scenario[] = [
  { name: 'fail×3 from up: down exactly at the 3rd', rise: 2, fall: 3, start: 'fully-up', seq: 'FFF', changes: [3], end: false },
  { name: 'fail×2 from up: still up', rise: 2, fall: 3, start: 'fully-up', seq: 'FF', changes: [], end: true },
  { name: 'ok×2 from down: up exactly at the 2nd', rise: 2, fall: 3, start: 'fully-down', seq: 'PP', changes: [2], end: true },
  { name: 'ok×1 from down: still down', rise: 2, fall: 3, start: 'fully-down', seq: 'P', changes: [], end: false },
  { name: 'alternating from up never changes state', rise: 2, fall: 3, start: 'fully-up', seq: 'FPFPFPFPFPFP', changes: [], end: true },
  { name: 'alternating from down never changes state', rise: 2, fall: 3, start: 'fully-down', seq: 'PFPFPFPFPFPF', changes: [], end: false },
  { name: 'FFPF from up: a pass resets the failure run', rise: 2, fall: 3, start: 'fully-up', seq: 'FFPFF', changes: [], end: true },
  { name: 'FFPFFF from up: down at the 3rd of the new run', rise: 2, fall: 3, start: 'fully-up', seq: 'FFPFFF', changes: [6], end: false },
  { name: 'PF PP from down: a failure resets the pass run', rise: 2, fall: 3, start: 'fully-down', seq: 'PFPP', changes: [4], end: true },
  { name: 'a full cycle: down at fall, up at rise', rise: 2, fall: 3, start: 'fully-up', seq: 'FFFPP', changes: [3, 5], end: true },
  { name: 'back down right after coming up needs a full fall run', rise: 2, fall: 3, start: 'fully-down', seq: 'PPFFF', changes: [2, 5], end: false },
  { name: 'rise=1 fall=1 follows every result', rise: 1, fall: 1, start: 'fully-up', seq: 'FPFP', changes: [1, 2, 3, 4], end: true },
  { name: "init 'up': the first failure takes it down (HAProxy default)", rise: 2, fall: 3, start: 'up', seq: 'F', changes: [1], end: false },
  { name: "init 'up': a pass first makes it fully up", rise: 2, fall: 3, start: 'up', seq: 'PFF', changes: [], end: true },
  { name: "init 'down': the first pass brings it up", rise: 2, fall: 3, start: 'down', seq: 'P', changes: [1], end: true },
  { name: "init 'down': after a failure it needs rise passes", rise: 2, fall: 3, start: 'down', seq: 'FPP', changes: [3], end: true },
  { name: 'rise=3 fall=2 from down', rise: 3, fall: 2, start: 'fully-down', seq: 'PPFPPP', changes: [6], end: true },
  { name: 'many failures stay at 0', rise: 2, fall: 3, start: 'fully-down', seq: 'FFFFFPP', changes: [7], end: true },
  { name: 'many passes stay at the top', rise: 2, fall: 3, start: 'fully-up', seq: 'PPPPPFFF', changes: [8], end: false },
]

t.test('rise/fall counter: flap sequences (HAProxy semantics)', async (t) => {
  for (const s of scenarios) {
    const limits = { rise: s.rise, fall: s.fall }
    let health = initialHealth(s.start, limits)
    const changes: number[] = []
    let inRange = true
    for (let i = 0; i < s.seq.length; i++) {
      const r = step(health, s.seq[i] === 'P', limits)
      inRange &&= r.health >= 0 && r.health <= maxHealth(limits)
      if (r.changed) changes.push(i + 1)
      health = r.health
    }
    t.ok(inRange, `${s.name}: the counter stays within 0..rise+fall-1`)
    t.same(changes, s.changes, `${s.name} (rise ${s.rise} fall ${s.fall}, ${s.start}, ${s.seq})`)
    t.equal(isUp(health, limits), s.end, `${s.name}: ends ${s.end ? 'up' : 'down'}`)
  }
})

t.test('initial counter values match HAProxy srv_set_init_state', async (t) => {
  const limits = { rise: 2, fall: 3 }
  t.equal(initialHealth('fully-up', limits), 4)
  t.equal(initialHealth('up', limits), 2)
  t.equal(initialHealth('down', limits), 1)
  t.equal(initialHealth('fully-down', limits), 0)
})

t.test('transitional means between the resting points (fastinter applies)', async (t) => {
  const limits = { rise: 2, fall: 3 }
  t.same([0, 1, 2, 3, 4].map((h) => isTransitional(h, limits)), [false, true, true, true, false])
})
