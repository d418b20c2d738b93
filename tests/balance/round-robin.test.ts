import t from 'tap'
import { createPicker } from '../../lib/balance/round-robin.js'
import type { BalanceEntry, Picker } from '../../lib/balance/index.js'
import { activeFor, reversed, weighted } from './fixtures.js'

const abc = weighted([
  ['a:1', 3],
  ['b:1', 2],
  ['c:1', 1],
])

function names(picker: Picker, entries: readonly BalanceEntry[], count: number, exclude?: ReadonlySet<number>): string {
  const picked: string[] = []
  for (let i = 0; i < count; i++) picked.push(entries[picker.pick(0, exclude)]?.name[0] ?? '-')
  return picked.join('')
}

t.test('weights 3:2:1 give nginx\'s smooth sequence a,b,a,c,b,a, exactly 3:2:1 every 6 picks', async (t) => {
  // current weights per pick (a,b,c): 3,2,1→a  0,4,2→b  3,0,3→a (tie: lower name)  0,2,4→c
  // 3,4,-1→b  6,0,0→a, and all are back to 0.
  const picker = createPicker(abc, activeFor(abc))
  t.equal(names(picker, abc, 6), 'abacba')
  t.equal(names(picker, abc, 600), 'abacba'.repeat(100))
})

t.test('equal weights take plain turns in name order', async (t) => {
  const entries = weighted([
    ['10.0.0.3:5432', 1],
    ['10.0.0.1:5432', 1],
    ['10.0.0.2:5432', 1],
  ])
  const picker = createPicker(entries, activeFor(entries))
  const sequence = Array.from({ length: 6 }, () => entries[picker.pick(0)]?.name.slice(7, 8))
  t.same(sequence, ['1', '2', '3', '1', '2', '3'])
})

t.test('the same backends in another order give the same sequence', async (t) => {
  const other = reversed(abc)
  t.equal(names(createPicker(other, activeFor(other)), other, 60), names(createPicker(abc, activeFor(abc)), abc, 60))
})

t.test('excluded backends are skipped and the rest keep their proportions', async (t) => {
  const picker = createPicker(abc, activeFor(abc))
  const withoutA = names(picker, abc, 30, new Set([0]))
  t.notMatch(withoutA, /a/)
  t.equal(withoutA.split('b').length - 1, 20, 'b:c stays 2:1')
  t.equal(names(picker, abc, 3, new Set([0, 1, 2])), '---', 'all excluded → -1')
  t.equal(createPicker([], new Int32Array(0)).pick(0), -1, 'no backends')
})
