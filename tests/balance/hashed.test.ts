// Properties every hashing algorithm promises, checked on the same 100k clients for each
// (after undici's table-driven balancer tests): order never matters, and weights hold.
import t from 'tap'
import { algorithms, type Algorithm } from '../../lib/balance/index.js'
import { activeFor, clientKeyHashes, mapKeys, movedFraction, percent, reversed, sharesBySlot, weighted } from './fixtures.js'

const hashes = clientKeyHashes()
const hashed: Array<[string, Algorithm]> = Object.entries(algorithms).filter(([, a]) => a.hashed)

t.test('the hashing algorithms are maglev, ring and ip-hash', async (t) => {
  t.same(hashed.map(([name]) => name).sort(), ['ip-hash', 'maglev', 'ring'])
})

for (const [name, algorithm] of hashed) {
  t.test(`${name}: the same backends listed in another order map every client identically`, async (t) => {
    const entries = weighted([
      ['10.0.0.7:5432', 2],
      ['10.0.0.1:5432', 1],
      ['db-3.internal:5432', 4],
      ['10.0.0.12:5432', 1],
    ])
    const other = reversed(entries)
    const moved = movedFraction(
      mapKeys(algorithm.createPicker(other, activeFor(other)), other, hashes),
      mapKeys(algorithm.createPicker(entries, activeFor(entries)), entries, hashes),
    )
    t.equal(moved, 0, 'no client of 100k maps differently')
  })

  t.test(`${name}: weights 3:2:1 split clients 50/33/17 within 3 points`, async (t) => {
    const entries = weighted([
      ['10.0.0.1:5432', 3],
      ['10.0.0.2:5432', 2],
      ['10.0.0.3:5432', 1],
    ])
    const shares = sharesBySlot(mapKeys(algorithm.createPicker(entries, activeFor(entries)), entries, hashes), 3)
    const expected = [3 / 6, 2 / 6, 1 / 6]
    entries.forEach((entry, i) => {
      t.ok(Math.abs(shares[i]! - expected[i]!) <= 0.03, `${entry.name}: ${percent(shares[i]!)}`)
    })
    t.comment(`${name} 3:2:1 shares: ${shares.map(percent).join(' / ')}`)
  })
}
