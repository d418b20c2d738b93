import t from 'tap'
import { createPicker } from '../../lib/balance/random-two.js'
import { activeFor, backends, percent, reversed, weighted } from './fixtures.js'

const PICKS = 100_000

t.test('a heavily loaded backend is (almost) never chosen', async (t) => {
  const entries = backends(4)
  const active = activeFor(entries)
  active.set([0, 500, 0, 0])
  const picker = createPicker(entries, active)
  let chosen = 0
  for (let i = 0; i < PICKS; i++) if (picker.pick(0) === 1) chosen++
  // The two draws are distinct, so the loaded backend would win only against an equal load.
  t.equal(chosen, 0, `chosen ${chosen} of ${PICKS} times`)
})

t.test('idle equal backends share picks evenly (each within 1.5 points of 25%)', async (t) => {
  const entries = backends(4)
  const picker = createPicker(entries, activeFor(entries))
  const counts = [0, 0, 0, 0]
  for (let i = 0; i < PICKS; i++) counts[picker.pick(0)]!++
  const shares = counts.map((count) => count / PICKS)
  t.comment(`shares: ${shares.map(percent).join(' / ')}`)
  for (const share of shares) t.ok(Math.abs(share - 0.25) <= 0.015, percent(share))
})

t.test('idle weighted backends share picks by weight (3:2:1 within 3 points)', async (t) => {
  const entries = weighted([
    ['10.0.0.1:5432', 3],
    ['10.0.0.2:5432', 2],
    ['10.0.0.3:5432', 1],
  ])
  const picker = createPicker(entries, activeFor(entries))
  const counts = [0, 0, 0]
  for (let i = 0; i < PICKS; i++) counts[picker.pick(0)]!++
  const expected = [3 / 6, 2 / 6, 1 / 6]
  t.comment(`3:2:1 shares: ${counts.map((count) => percent(count / PICKS)).join(' / ')}`)
  counts.forEach((count, i) => t.ok(Math.abs(count / PICKS - expected[i]!) <= 0.03))
})

t.test('connections that stay open spread evenly as the counts rise', async (t) => {
  const entries = backends(5)
  const active = activeFor(entries)
  const picker = createPicker(entries, active)
  for (let i = 0; i < 10_000; i++) active[picker.pick(0)]!++
  const spread = Math.max(...active) - Math.min(...active)
  t.comment(`after 10k connections: ${[...active].join(', ')}`)
  t.ok(spread <= 10, `max - min = ${spread}`)
})

t.test('two pickers built from the same backends (in any order) make the same choices', async (t) => {
  const entries = backends(6)
  const other = reversed(entries)
  const one = createPicker(entries, activeFor(entries))
  const two = createPicker(other, activeFor(other))
  const first = Array.from({ length: 1000 }, () => entries[one.pick(0)]!.name)
  const second = Array.from({ length: 1000 }, () => other[two.pick(0)]!.name)
  t.same(second, first)
})

t.test('exclusions are honoured; one left is always it; none left is -1', async (t) => {
  const entries = backends(5)
  const picker = createPicker(entries, activeFor(entries))
  const exclude = new Set([0, 3])
  const counts = [0, 0, 0, 0, 0]
  for (let i = 0; i < 3000; i++) counts[picker.pick(0, exclude)]!++
  t.equal(counts[0]! + counts[3]!, 0, 'never an excluded backend')
  t.ok(counts[1]! > 800 && counts[2]! > 800 && counts[4]! > 800, `the rest share: ${counts.join(',')}`)
  t.equal(picker.pick(0, new Set([0, 1, 2, 3])), 4)
  t.equal(picker.pick(0, new Set([0, 1, 2, 3, 4])), -1)
  const single = backends(1)
  t.equal(createPicker(single, activeFor(single)).pick(0), 0, 'a single backend is always it')
  t.equal(createPicker([], new Int32Array(0)).pick(0), -1, 'no backends')
})
