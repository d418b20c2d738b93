import t from 'tap'
import { murmur3, keyHash } from '../../lib/balance/hash.js'

// Reference vectors for MurmurHash3_x86_32 (from the SMHasher verification set and widely
// published tables); pinning them means a refactor can never silently remap every client.
const vectors: Array<[string, number, number]> = [
  ['', 0, 0x00000000],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  ['a', 0x9747b28c, 0x7fa09ea6],
  ['aaaa', 0x9747b28c, 0x5a97808a],
  ['abc', 0, 0xb3dd93fa],
  ['abcd', 0x9747b28c, 0xf0478627],
  ['Hello, world!', 0x9747b28c, 0x24884cba],
  ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
]

t.test('murmur3 matches the published x86_32 vectors', async (t) => {
  for (const [text, seed, expected] of vectors) {
    t.equal(murmur3(text, seed), expected, `murmur3(${JSON.stringify(text)}, ${seed.toString(16)})`)
  }
})

t.test('the key hash of an address is pinned, so every l4lb process agrees', async (t) => {
  t.equal(keyHash('10.0.0.1'), murmur3('10.0.0.1', 0))
  t.not(keyHash('10.0.0.1'), keyHash('10.0.0.2'))
})
