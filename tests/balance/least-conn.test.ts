import t from 'tap'
import { createPicker } from '../../lib/balance/least-conn.js'
import { activeFor, backends, reversed, weighted } from './fixtures.js'

t.test('a new connection goes to the backend with the fewest active connections', async (t) => {
  const entries = backends(4)
  const active = activeFor(entries)
  active.set([5, 2, 7, 3])
  const picker = createPicker(entries, active)
  t.equal(picker.pick(0), 1)
  active[1] = 9
  t.equal(picker.pick(0), 3, 'reads the live counts, no rebuild needed')
})

t.test('three idle backends take connections in rotation, not all on the first', async (t) => {
  const entries = backends(3)
  const picker = createPicker(entries, activeFor(entries))
  t.same(Array.from({ length: 7 }, () => picker.pick(0)), [0, 1, 2, 0, 1, 2, 0])
  // Rotation order is name order, whatever the input order.
  const other = reversed(entries)
  const otherPicker = createPicker(other, activeFor(other))
  t.same(Array.from({ length: 3 }, () => other[otherPicker.pick(0)]!.name), entries.map((entry) => entry.name))
})

t.test('the data path counts connections as they open and they spread evenly', async (t) => {
  const entries = backends(5)
  const active = activeFor(entries)
  const picker = createPicker(entries, active)
  for (let i = 0; i < 1000; i++) active[entries[picker.pick(0)]!.slot]!++
  t.same([...active], [200, 200, 200, 200, 200])
})

t.test('load is per unit of weight: weight 2 with 2 connections ties weight 1 with 1', async (t) => {
  const entries = weighted([
    ['10.0.0.1:5432', 2],
    ['10.0.0.2:5432', 1],
    ['10.0.0.3:5432', 1],
  ])
  const active = activeFor(entries)
  active.set([2, 1, 3])
  const picker = createPicker(entries, active)
  t.same([picker.pick(0), picker.pick(0), picker.pick(0)], [0, 1, 0], 'the two tied backends alternate')
  active.set([0, 0, 0])
  for (let i = 0; i < 400; i++) active[picker.pick(0)]!++
  t.same([...active], [200, 100, 100], 'weight 2 carries twice the connections')
})

t.test('excluded backends are skipped even when idle; -1 when all are excluded', async (t) => {
  const entries = backends(3)
  const active = activeFor(entries)
  active.set([0, 4, 9])
  const picker = createPicker(entries, active)
  t.equal(picker.pick(0, new Set([0])), 1)
  t.equal(picker.pick(0, new Set([0, 1])), 2)
  t.equal(picker.pick(0, new Set([0, 1, 2])), -1)
  t.equal(createPicker([], new Int32Array(0)).pick(0), -1, 'no backends')
})
