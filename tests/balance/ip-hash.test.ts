import t from 'tap'
import { buildSlots, createPicker } from '../../lib/balance/ip-hash.js'
import {
  activeFor,
  backends,
  clientKeyHashes,
  mapKeys,
  movedFraction,
  percent,
  weighted,
  without,
} from './fixtures.js'

const hashes = clientKeyHashes()

t.test('the slot array repeats each backend weight/gcd times, in name order', async (t) => {
  const entries = weighted([
    ['10.0.0.2:5432', 20],
    ['10.0.0.1:5432', 30],
    ['10.0.0.3:5432', 10],
  ])
  t.same([...buildSlots(entries)], [1, 1, 1, 0, 0, 2])
})

t.test('it is not consistent: removing one of 5 backends moves most clients, as nginx ip_hash does', async (t) => {
  const entries = backends(5)
  const before = mapKeys(createPicker(entries, activeFor(entries)), entries, hashes)
  const rest = without(entries, entries[4]!.name)
  const moved = movedFraction(before, mapKeys(createPicker(rest, activeFor(entries)), rest, hashes))
  t.comment(`removing 1 of 5 moved ${percent(moved)} of clients (a consistent hash moves ~20%)`)
  t.ok(moved > 0.5, 'most clients move')
})

t.test('a retry that excludes refused backends gets a stable fallback, and -1 when none is left', async (t) => {
  const entries = weighted([
    ['10.0.0.1:5432', 1],
    ['10.0.0.2:5432', 1],
    ['10.0.0.3:5432', 2],
    ['10.0.0.4:5432', 1],
  ])
  const picker = createPicker(entries, activeFor(entries))
  for (const exclude of [new Set([2]), new Set([0, 1, 3]), new Set([0, 2, 3])]) {
    let bad = 0
    let unstable = 0
    let healthyMoved = 0
    for (const hash of hashes) {
      const home = picker.pick(hash)
      const fallback = picker.pick(hash, exclude)
      if (fallback < 0 || exclude.has(fallback)) bad++
      if (picker.pick(hash, exclude) !== fallback) unstable++
      if (!exclude.has(home) && fallback !== home) healthyMoved++
    }
    const label = `excluding ${[...exclude].join(',')}`
    t.equal(bad, 0, `${label}: never an excluded backend`)
    t.equal(unstable, 0, `${label}: same client, same fallback`)
    t.equal(healthyMoved, 0, `${label}: clients of the others stay put`)
  }
  t.equal(picker.pick(hashes[0]!, new Set([0, 1, 2, 3])), -1, 'all excluded')
  t.equal(createPicker([], new Int32Array(0)).pick(hashes[0]!), -1, 'no backends')
})
