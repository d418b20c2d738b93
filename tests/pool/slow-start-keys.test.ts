import t from 'tap'
import { algorithms, type AlgorithmName } from '../../lib/balance/index.js'
import { WEIGHT_SCALE } from '../../lib/pool/index.js'
import { clientKeyHashes } from '../balance/fixtures.js'

// What a slow-start ramp does to the keys of the *other* backends under the hashing algorithms:
// 10 backends of weight 1 (16 once scaled), the 10th ramping from absent through 1, 2, ... 16.
// A "collateral move" is a key that changes owner between two backends that are not ramping.
// The README's "Slow start" section quotes these figures (`npx tap dist/tests/pool/slow-start-keys.test.js`).
const hashes = clientKeyHashes(100_000)
const names = Array.from({ length: 10 }, (_, i) => `10.0.1.${i + 1}:5432`)
const RAMPING = 9

function owners(algorithm: AlgorithmName, weight: number): Int32Array {
  const entries = names.map((name, slot) => ({ name, weight: slot === RAMPING ? weight : WEIGHT_SCALE, slot })).filter((e) => e.weight > 0)
  const picker = algorithms[algorithm].createPicker(entries, new Int32Array(names.length))
  return Int32Array.from(hashes, (h) => entries[picker.pick(h)]!.slot)
}

function collateral(before: Int32Array, after: Int32Array): number {
  let moved = 0
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i] && before[i] !== RAMPING && after[i] !== RAMPING) moved++
  return moved / before.length
}

function ramp(algorithm: AlgorithmName): { total: number; worst: number; oneShot: number } {
  let previous = owners(algorithm, 0)
  let total = 0
  let worst = 0
  for (let weight = 1; weight <= WEIGHT_SCALE; weight++) {
    const current = owners(algorithm, weight)
    const moved = collateral(previous, current)
    total += moved
    worst = Math.max(worst, moved)
    previous = current
  }
  return { total, worst, oneShot: collateral(owners(algorithm, 0), owners(algorithm, WEIGHT_SCALE)) }
}

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`

t.test('ring: a ramp only ever moves keys to the ramping backend', async (t) => {
  const r = ramp('ring')
  t.comment(`ring: collateral moves over the ramp ${pct(r.total)}, worst step ${pct(r.worst)}, adding at once ${pct(r.oneShot)}`)
  t.equal(r.total, 0)
})

t.test('maglev: each step moves a few keys between other backends; the whole ramp a few times what adding at once does', async (t) => {
  const r = ramp('maglev')
  t.comment(`maglev: collateral moves over the ramp ${pct(r.total)}, worst step ${pct(r.worst)}, adding at once ${pct(r.oneShot)}`)
  t.ok(r.worst < 0.005, `worst step ${pct(r.worst)} < 0.5%`)
  t.ok(r.total < 0.03, `whole ramp ${pct(r.total)} < 3%`)
  t.ok(r.total > r.oneShot, 'a ramp costs more churn than a one-shot add (the price of the gentle start)')
})

t.test('ip-hash: every step reshuffles most keys (do not combine ip-hash with slow start)', async (t) => {
  const r = ramp('ip-hash')
  t.comment(`ip-hash: collateral moves over the ramp ${pct(r.total)}, worst step ${pct(r.worst)}, adding at once ${pct(r.oneShot)}`)
  t.ok(r.worst > 0.5, `worst step ${pct(r.worst)}: most keys move`)
})
