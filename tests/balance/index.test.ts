import t from 'tap'
import {
  algorithmAliases,
  algorithmNames,
  algorithms,
  isBalanceName,
  resolveAlgorithm,
  resolveAlgorithmName,
  type AlgorithmName,
  type BalanceEntry,
} from '../../lib/balance/index.js'
import { activeFor, backends, clientKeyHashes, weighted, xorshift32 } from './fixtures.js'

const names = Object.keys(algorithms) as AlgorithmName[]
const hashes = clientKeyHashes(10_000, 0xfeed)

t.test('the registry holds the six documented algorithms, and `consistent` (the default) means Maglev', async (t) => {
  // "At least these": a new algorithm is one file, one registry line and its own test file; the
  // contract tests below run over whatever the registry holds, so this list needs no edit.
  const documented = ['maglev', 'ring', 'ip-hash', 'round-robin', 'least-conn', 'random-two']
  t.same(names.slice(0, documented.length), documented)
  t.same(algorithmNames, ['consistent', ...names])
  t.equal(resolveAlgorithm('consistent'), algorithms.maglev)
  t.equal(resolveAlgorithmName('consistent'), 'maglev')
  t.same(algorithmAliases, { consistent: 'maglev' })
  for (const name of names) t.equal(resolveAlgorithm(name), algorithms[name], name)
  for (const bad of ['Maglev', 'roundrobin', '', 'toString', '__proto__', 'constructor']) {
    t.equal(resolveAlgorithm(bad), undefined, `unknown name ${JSON.stringify(bad)}`)
    t.notOk(isBalanceName(bad))
  }
  t.same(
    documented.filter((name) => algorithms[name as AlgorithmName].hashed),
    ['maglev', 'ring', 'ip-hash'],
    'exactly the hashing ones keep a key on one backend',
  )
})

for (const name of names) {
  const algorithm = algorithms[name]

  t.test(`${name} honours the picker contract`, async (t) => {
    t.equal(algorithm.createPicker([], new Int32Array(0)).pick(hashes[0]!), -1, 'no backends → -1')
    t.equal(algorithm.createPicker([], new Int32Array(0)).pick(hashes[0]!, new Set([0])), -1)

    const single = backends(1)
    const one = algorithm.createPicker(single, activeFor(single))
    let notZero = 0
    for (const hash of hashes.subarray(0, 1000)) if (one.pick(hash) !== 0) notZero++
    t.equal(notZero, 0, 'a single backend is always index 0')
    t.equal(one.pick(hashes[0]!, new Set([0])), -1, 'a single excluded backend → -1')

    const entries: BalanceEntry[] = weighted([
      ['10.0.0.9:6000', 1],
      ['10.0.0.1:6000', 256],
      ['[2001:db8::1]:6000', 7],
      ['db.internal:6000', 3],
      ['10.0.0.2:6000', 1],
    ])
    const active = activeFor(entries)
    const picker = algorithm.createPicker(entries, active)
    const random = xorshift32(7)
    let outOfRange = 0
    let pickedExcluded = 0
    for (let i = 0; i < 10_000; i++) {
      const hash = hashes[i]!
      const exclude = i % 3 === 0 ? new Set([random() % 5, random() % 5]) : null
      const index = picker.pick(hash, exclude)
      if (!Number.isInteger(index) || index < 0 || index >= entries.length) outOfRange++
      else if (exclude?.has(index)) pickedExcluded++
      else active[entries[index]!.slot]! += random() % 2 === 0 ? 1 : 0
      if (i % 7 === 0) active[random() % 5] = random() % 50
    }
    t.equal(outOfRange, 0, 'never out of range over 10k picks')
    t.equal(pickedExcluded, 0, 'never an excluded entry')
    t.equal(picker.pick(hashes[1]!, new Set([0, 1, 2, 3, 4])), -1, 'all excluded → -1')

    if (algorithm.hashed) {
      let unstable = 0
      for (const hash of hashes) {
        if (picker.pick(hash) !== picker.pick(hash)) unstable++
        if (picker.pick(hash, new Set([1])) !== picker.pick(hash, new Set([1]))) unstable++
      }
      t.equal(unstable, 0, 'the same key gets the same backend and the same fallback')
    }
  })

  t.test(`${name} refuses entries that break the contract`, async (t) => {
    const cases: Array<[string, BalanceEntry[], RegExp]> = [
      ['weight 0', [{ name: 'a:1', weight: 0, slot: 0 }], /weight 0 is not an integer 1..256/],
      ['weight 257', [{ name: 'a:1', weight: 257, slot: 0 }], /weight 257/],
      ['weight 1.5', [{ name: 'a:1', weight: 1.5, slot: 0 }], /weight 1.5/],
      ['weight NaN', [{ name: 'a:1', weight: Number.NaN, slot: 0 }], /weight NaN/],
      ['empty name', [{ name: '', weight: 1, slot: 0 }], /empty name/],
      ['duplicate name', [{ name: 'a:1', weight: 1, slot: 0 }, { name: 'a:1', weight: 2, slot: 1 }], /listed twice/],
      ['slot outside active', [{ name: 'a:1', weight: 1, slot: 4 }], /slot 4 is outside/],
    ]
    for (const [label, entries, message] of cases) {
      t.throws(() => algorithm.createPicker(entries, new Int32Array(2)), message, label)
    }
  })
}
