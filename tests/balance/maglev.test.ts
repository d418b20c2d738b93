import t from 'tap'
import {
  buildMaglevTable,
  createMaglevPicker,
  DEFAULT_TABLE_SIZE,
  isPrime,
  murmur3,
  SEED_OFFSET,
  SEED_SKIP,
  type BalanceEntry,
} from '../../lib/balance/index.js'
import { createPicker } from '../../lib/balance/maglev.js'
import {
  activeFor,
  backends,
  clientKeyHashes,
  mapKeys,
  movedFraction,
  percent,
  weighted,
  representatives,
  without,
} from './fixtures.js'

const hashes = clientKeyHashes()
const trio = weighted([
  ['10.0.0.1:5432', 1],
  ['10.0.0.2:5432', 1],
  ['10.0.0.3:5432', 1],
])

function tableNames(entries: readonly BalanceEntry[], size: number): string[] {
  return Array.from(buildMaglevTable(entries, size), (index) => entries[index]?.name.slice(7, 8) ?? '?')
}

/** Pseudo-code 1 of the paper transcribed literally (full permutation matrix), for equal weights. */
function paperTable(names: readonly string[], size: number): string[] {
  const sorted = [...names].sort()
  const permutation = sorted.map((name) => {
    const offset = murmur3(name, SEED_OFFSET) % size
    const skip = (murmur3(name, SEED_SKIP) % (size - 1)) + 1
    return Array.from({ length: size }, (_, j) => (offset + j * skip) % size)
  })
  const next = sorted.map(() => 0)
  const entry = new Array<string>(size).fill('')
  let n = 0
  for (;;) {
    for (let i = 0; i < sorted.length; i++) {
      let c = permutation[i]![next[i]!]!
      while (entry[c] !== '') {
        next[i]!++
        c = permutation[i]![next[i]!]!
      }
      entry[c] = sorted[i]!
      next[i]!++
      n++
      if (n === size) return entry
    }
  }
}

t.test('the lookup table for three backends is pinned at sizes 7 and 13 (golden tables)', async (t) => {
  // Offsets/skips at M=7: .1 → (0, 1), .2 → (3, 2), .3 → (2, 6). Turn 1 fills 0, 3, 2; turn 2
  // fills 1, 5, 6; turn 3 gives .1 slot 4 and the table is full.
  t.same(tableNames(trio, 7), ['1', '1', '3', '2', '1', '2', '3'])
  t.same(tableNames(trio, 13), ['3', '1', '1', '1', '2', '2', '3', '2', '3', '2', '1', '1', '3'])
  // Weights 3:2:1 at M=13: .3 takes a turn only every third iteration.
  const heavy = weighted([
    ['10.0.0.1:5432', 3],
    ['10.0.0.2:5432', 2],
    ['10.0.0.3:5432', 1],
  ])
  t.same(tableNames(heavy, 13), ['3', '1', '1', '1', '2', '2', '2', '2', '3', '2', '1', '1', '1'])
})

t.test('with equal weights the table is exactly the paper\'s Pseudo-code 1', async (t) => {
  for (const [count, size] of [[3, 7], [5, 13], [7, 101], [10, DEFAULT_TABLE_SIZE]] as const) {
    const entries = backends(count)
    const ours = Array.from(buildMaglevTable(entries, size), (index) => entries[index]!.name)
    const paper = paperTable(entries.map((entry) => entry.name), size)
    t.ok(ours.every((name, slot) => name === paper[slot]), `${count} backends, M=${size}: every slot agrees`)
  }
})

t.test('an operator who sets a non-prime or too small table size gets an error, not a hang', async (t) => {
  t.ok(isPrime(65_537))
  t.notOk(isPrime(65_536))
  for (const tableSize of [65_536, 9, 1, 0, -7, 2.5, Number.NaN, 16_777_259]) {
    t.throws(() => createMaglevPicker(trio, activeFor(trio), { tableSize }), { name: 'BalanceError', code: 'L4LB_ERR_BALANCE' }, `size ${tableSize}`)
  }
  t.throws(() => createMaglevPicker(trio, activeFor(trio), { tableSize: 2 }), /smaller than 3 backends/)
  t.same([...buildMaglevTable(trio, 3)].sort(), [0, 1, 2], 'size = N gives each backend one slot')
})

t.test('3 to 50 equal backends each own within 5% of the mean number of slots', async (t) => {
  let worst = 0
  for (let count = 3; count <= 50; count++) {
    const table = buildMaglevTable(backends(count))
    const slots = new Int32Array(count)
    for (const index of table) slots[index]!++
    const ratio = Math.max(...slots) / (table.length / count)
    worst = Math.max(worst, ratio)
    t.ok(ratio <= 1.05, `N=${count}: max/mean ${ratio.toFixed(5)}`)
  }
  t.comment(`worst max/mean over N=3..50: ${worst.toFixed(5)}`)
})

t.test('removing one of N backends moves little more than its own 1/N of clients', async (t) => {
  for (const count of [3, 5, 10, 20]) {
    const entries = backends(count)
    const before = mapKeys(createPicker(entries, activeFor(entries)), entries, hashes)
    let worst = 0
    for (const gone of representatives(entries)) {
      const rest = without(entries, gone.name)
      const after = mapKeys(createPicker(rest, activeFor(entries)), rest, hashes)
      const moved = movedFraction(before, after)
      worst = Math.max(worst, moved)
      t.ok(moved <= 1 / count + 0.02, `N=${count} without ${gone.name}: ${percent(moved)} moved`)
      // Re-adding it, even at the end of the list, restores every client's backend.
      const back = [...rest, gone]
      t.equal(movedFraction(before, mapKeys(createPicker(back, activeFor(back)), back, hashes)), 0)
    }
    t.comment(`N=${count}: worst remap ${percent(worst)} (1/N = ${percent(1 / count)})`)
  }
})

t.test('a retry that excludes refused backends gets a stable fallback, and -1 when none is left', async (t) => {
  const entries = backends(5)
  const picker = createPicker(entries, activeFor(entries))
  const exclude = new Set([1, 3])
  let excludedPicks = 0
  let healthyMoved = 0
  let unstable = 0
  for (const hash of hashes) {
    const home = picker.pick(hash)
    const fallback = picker.pick(hash, exclude)
    if (exclude.has(fallback) || fallback < 0) excludedPicks++
    if (!exclude.has(home) && fallback !== home) healthyMoved++
    if (picker.pick(hash, exclude) !== fallback) unstable++
  }
  t.equal(excludedPicks, 0, 'no fallback is an excluded backend')
  t.equal(healthyMoved, 0, 'clients of the healthy backends stay put')
  t.equal(unstable, 0, 'the same client gets the same fallback every time')
  t.equal(picker.pick(hashes[0]!, new Set([0, 1, 2, 3, 4])), -1)
  t.equal(picker.pick(hashes[0]!, new Set([0, 1, 2, 3, 4, 99])), -1, 'stale indices are ignored')
  t.equal(createPicker([], new Int32Array(0)).pick(hashes[0]!), -1, 'no backends')
})

t.test('the default table for 100 backends is full and even: each holds floor(M/N) or ceil(M/N) entries', async (t) => {
  // What makes a rebuild on every health change safe: the table is all there is (no leftover
  // state), every one of the M entries is owned, and equal weights get equal shares to within one
  // entry (the paper's section 3.4 round-robin over permutations). Its cost is a perf/ matter.
  const entries = backends(100, 10)
  const table = buildMaglevTable(entries)
  t.equal(table.length, DEFAULT_TABLE_SIZE)
  const counts = new Array<number>(entries.length).fill(0)
  let unowned = 0
  for (const index of table) {
    if (index < 0 || index >= entries.length) unowned++
    else counts[index]!++
  }
  t.equal(unowned, 0, 'every entry is owned')
  const low = Math.floor(DEFAULT_TABLE_SIZE / entries.length)
  t.ok(counts.every((c) => c === low || c === low + 1), `every backend holds ${low} or ${low + 1} entries (got ${Math.min(...counts)}..${Math.max(...counts)})`)
})
