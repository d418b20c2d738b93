import t from 'tap'
import { MAX_RING_POINTS, POINTS_PER_WEIGHT } from '../../lib/balance/index.js'
import { buildRing, createPicker, vnodeCounts } from '../../lib/balance/ring.js'
import {
  activeFor,
  backends,
  clientKeyHashes,
  mapKeys,
  movedFraction,
  percent,
  sharesBySlot,
  weighted,
  representatives,
  without,
} from './fixtures.js'

const hashes = clientKeyHashes()

t.test('each backend places POINTS_PER_WEIGHT points per unit of weight on a sorted ring', async (t) => {
  const entries = weighted([
    ['10.0.0.1:5432', 3],
    ['10.0.0.2:5432', 1],
  ])
  const { points, owners } = buildRing(entries)
  t.equal(points.length, 4 * POINTS_PER_WEIGHT)
  let sorted = true
  for (let i = 1; i < points.length; i++) if (points[i]! < points[i - 1]!) sorted = false
  t.ok(sorted, 'points ascend')
  t.equal(owners.filter((owner) => owner === 0).length, 3 * POINTS_PER_WEIGHT)
})

t.test('removing one of N backends moves only its own clients, and re-adding it moves them back', async (t) => {
  for (const count of [3, 5, 10, 20]) {
    const entries = backends(count)
    const before = mapKeys(createPicker(entries, activeFor(entries)), entries, hashes)
    let worst = 0
    for (const gone of representatives(entries)) {
      const rest = without(entries, gone.name)
      const after = mapKeys(createPicker(rest, activeFor(entries)), rest, hashes)
      let strayed = 0
      for (let i = 0; i < before.length; i++) if (before[i] !== gone.slot && after[i] !== before[i]) strayed++
      t.equal(strayed, 0, `N=${count} without ${gone.name}: no other backend's client moves`)
      const moved = movedFraction(before, after)
      worst = Math.max(worst, moved)
      t.ok(moved <= 1 / count + 0.02, `N=${count} without ${gone.name}: ${percent(moved)} moved`)
      const back = [...rest, gone]
      t.equal(movedFraction(before, mapKeys(createPicker(back, activeFor(back)), back, hashes)), 0, 're-added')
    }
    t.comment(`N=${count}: worst remap ${percent(worst)} (1/N = ${percent(1 / count)})`)
  }
})

t.test('huge weights are capped near MAX_RING_POINTS and keep their proportions', async (t) => {
  const entries = weighted(Array.from({ length: 12 }, (_, i) => [`10.0.2.${i + 1}:5432`, i < 6 ? 256 : 128] as const))
  const counts = vnodeCounts(entries)
  const total = counts.reduce((sum, count) => sum + count, 0)
  t.ok(total <= MAX_RING_POINTS + entries.length, `${total} points`)
  t.equal(counts[0], 2 * counts[11]!, 'weight 256 still has twice the points of weight 128')
  const shares = sharesBySlot(mapKeys(createPicker(entries, activeFor(entries)), entries, hashes), 12)
  const heavy = shares.slice(0, 6).reduce((sum, share) => sum + share, 0)
  t.ok(Math.abs(heavy - 2 / 3) <= 0.03, `the six weight-256 backends take ${percent(heavy)}`)
  t.equal(vnodeCounts(weighted([['10.0.0.1:5432', 1]]))[0], POINTS_PER_WEIGHT, 'small rings are not scaled')
})

t.test('a retry that excludes a backend goes where its clients will live once it is removed', async (t) => {
  const entries = backends(5)
  const picker = createPicker(entries, activeFor(entries))
  const gone = entries[2]!
  const exclude = new Set([2])
  const fallbacks = mapKeys(picker, entries, hashes, exclude)
  const rest = without(entries, gone.name)
  t.equal(movedFraction(fallbacks, mapKeys(createPicker(rest, activeFor(entries)), rest, hashes)), 0)
  t.equal(movedFraction(fallbacks, mapKeys(picker, entries, hashes, exclude)), 0, 'stable on a second try')
  t.notOk(fallbacks.includes(gone.slot), 'never the excluded backend')
  const two = new Set([0, 4])
  t.notOk(
    mapKeys(picker, entries, hashes.subarray(0, 10_000), two).some((slot) => slot === 0 || slot === 4),
    'two excluded backends are both avoided',
  )
  t.equal(picker.pick(hashes[0]!, new Set([0, 1, 2, 3, 4])), -1, 'all excluded')
  t.equal(createPicker([], new Int32Array(0)).pick(hashes[0]!), -1, 'no backends')
})

t.test('a heavy ring is capped at MAX_RING_POINTS and still shares keys evenly', async (t) => {
  // 8 backends of weight 256 would be 2 Mi points at POINTS_PER_WEIGHT: the cap divides every
  // count by the same power of two, so the ring stays small to rebuild and the shares hold.
  const heavy = weighted(Array.from({ length: 8 }, (_, i) => [`10.0.3.${i + 1}:5432`, 256] as const))
  const ring = buildRing(heavy)
  t.ok(ring.points.length <= MAX_RING_POINTS, `${ring.points.length} points, at most ${MAX_RING_POINTS}`)
  t.equal(ring.points.length, (8 * 256 * POINTS_PER_WEIGHT) / 8, 'divided by 8, the smallest power of two that fits')
  // Bands, as undici's expectedRatios: the keys are fixed, so these are exact for this build; the
  // bands are what the point counts promise (about 1/sqrt(points per backend) of spread).
  for (const [name, entries, band] of [['8 x weight 256', heavy, 0.05], ['20 x weight 1', backends(20), 0.1]] as const) {
    const counts = new Array<number>(entries.length).fill(0)
    for (const slot of mapKeys(createPicker(entries, activeFor(entries)), entries, hashes)) counts[slot]!++
    const even = hashes.length / entries.length
    const ratios = counts.map((c) => c / even)
    t.ok(ratios.every((r) => Math.abs(r - 1) <= band), `${name}: every share within ±${band * 100}% of even (${Math.min(...ratios).toFixed(3)}..${Math.max(...ratios).toFixed(3)})`)
  }
})
