/**
 * Golden tests for the native plane's lookups and headers: the C code and the TypeScript give the
 * same answer for the same input (DESIGN: "the same few lines of lookup run in TS and in C, and a
 * golden test proves they agree"). Skipped, with the reason, where the addon is not built.
 */
import t from 'tap'
import { algorithms, keyHash, murmur3, type AlgorithmName, type BalanceEntry } from '../../lib/balance/index.js'
import { Admission, REFUSAL_REASONS } from '../../lib/flow/admit.js'
import { nativeAddon, nativeAdmission, nativePick, loadAddon } from '../../lib/native/index.js'
import { encodeV1, encodeV2, makeUniqueId, uniqueIdTlv } from '../../lib/proxy-protocol/index.js'
import { clientKeyHashes, xorshift32 } from '../balance/fixtures.js'

const loaded = loadAddon()
const skip = 'addon' in loaded ? false : loaded.reason
const KEYS = 100_000

t.test('murmur3: the same hash over the same bytes', { skip }, async (t) => {
  const addon = nativeAddon()!
  const next = xorshift32(7)
  for (let i = 0; i < 2000; i++) {
    const text = `${next() % 256}.${next() % 256}.${next() % 256}.${next() % 256}:${next() % 65536}`.slice(0, 1 + (i % 24))
    const bytes = Buffer.from(text, 'latin1')
    for (const seed of [0, 0x9747b28c, 0x5bd1e995]) {
      if (addon.murmur3(bytes, seed) !== murmur3(text, seed)) return t.fail(`murmur3(${text}, ${seed}) differs`)
    }
  }
  t.pass('2000 keys x 3 seeds agree')
})

t.test('every algorithm: the C lookup and the TS picker give the same backend for 100,000 keys', { skip }, async (t) => {
  const addon = nativeAddon()!
  const hashes = clientKeyHashes(KEYS)
  for (const name of Object.keys(algorithms) as AlgorithmName[]) {
    let mismatches = 0
    let cases = 0
    for (let n = 2; n <= 20; n++) {
      // weights 1..5 cycling, names in a shuffled order so name-sorting matters
      const entries: BalanceEntry[] = Array.from({ length: n }, (_, i) => ({ name: `10.0.${(i * 7) % n}.${i + 1}:5432`, weight: (i % 5) + 1, slot: n - 1 - i }))
      // live counts for least-conn and random-two: fixed, uneven
      const active = Int32Array.from({ length: n }, (_, i) => (i * 37) % 11)
      const ts = algorithms[name].createPicker(entries, active)
      const data = ts.exportPickData!()
      const native = addon.pickMany(nativePick(data), n, hashes, active)
      for (let k = 0; k < KEYS; k++) if (ts.pick(hashes[k]!) !== native[k]) mismatches++
      cases++
    }
    t.equal(mismatches, 0, `${name}: ${cases} backend sets x ${KEYS} keys, no mismatch`)
  }
})

t.test('no usable backend: the empty pick data of every algorithm is accepted and picks nothing', { skip }, async (t) => {
  const addon = nativeAddon()!
  const hashes = clientKeyHashes(100)
  for (const name of Object.keys(algorithms) as AlgorithmName[]) {
    const data = algorithms[name].createPicker([], new Int32Array(4)).exportPickData!()
    const picks = addon.pickMany(nativePick(data), 0, hashes, new Int32Array(4))
    t.ok(picks.every((p) => p === -1), `${name}: -1 for every key`)
  }
})

t.test('admission: the C admit stage refuses the same connections for the same reasons as lib/flow Admission', { skip }, async (t) => {
  const addon = nativeAddon()!
  const settings = [
    { allow: ['127.0.0.0/8', '2001:db8::/32', '::ffff:10.1.0.0/112'], deny: ['127.7.0.0/16', '2001:db8:dead::/48', '127.0.0.9'], maxConnsPerIp: 2, ratePerIp: 3 },
    { allow: [], deny: ['10.0.0.0/8', '::/0'], maxConnsPerIp: 0, ratePerIp: 0.5 },
    { allow: ['0.0.0.0/0'], deny: [], maxConnsPerIp: 1, ratePerIp: 0 },
    { allow: [], deny: [], maxConnsPerIp: 3, ratePerIp: 7 },
  ]
  // Sources as sockets report them: IPv4, IPv4-mapped IPv6 (a dual-stack listener), IPv6.
  const sources = [
    '127.0.0.1', '127.7.1.1', '127.0.0.9', '10.1.2.3', '10.200.0.1', '192.0.2.1', '::ffff:127.7.1.1', '::ffff:10.1.2.3',
    '::ffff:127.0.0.1', '2001:db8::1', '2001:db8:dead::5', '2001:db9::1', '::1',
  ]
  for (const [n, s] of settings.entries()) {
    let now = 1000
    const ts = Admission.forTcp(s, { now: () => now })
    const next = xorshift32(11 + n)
    const open: string[] = []
    const ops: Array<[boolean, string, number]> = []
    const expected: number[] = []
    for (let i = 0; i < 20_000; i++) {
      now += (next() % 400) * 0.37
      if (open.length > 0 && next() % 3 === 0) {
        const ip = open.splice(next() % open.length, 1)[0]!
        ts.release(ip)
        ops.push([false, ip, now])
        expected.push(-1)
        continue
      }
      const ip = sources[next() % sources.length]!
      const refused = ts.admit(ip)
      if (refused === null) open.push(ip)
      ops.push([true, ip, now])
      expected.push(refused === null ? -1 : REFUSAL_REASONS.indexOf(refused))
    }
    const native = addon.admitSequence(nativeAdmission(s), ops)
    let mismatches = 0
    for (let i = 0; i < ops.length; i++) if (native[i] !== expected[i]) mismatches++
    const kinds = new Set(expected)
    t.equal(mismatches, 0, `settings ${n}: ${ops.length} admits and releases, no mismatch (outcomes ${[...kinds].sort().join(',')})`)
  }
})

t.test('PROXY v1 and v2 headers are byte-identical to lib/proxy-protocol encode', { skip }, async (t) => {
  const addon = nativeAddon()!
  const pairs: Array<[string, string]> = [
    ['10.1.2.3', '127.0.0.1'], ['2001:db8::1', '::1'], ['::ffff:10.0.0.7', '127.0.0.1'], ['192.168.0.1', '2001:db8:0:1::5'],
    ['fe80::1:0:0:2', '::'], ['0.0.0.0', '255.255.255.255'], ['2001:0:0:1::', '1:2:3:4:5:6:7:8'],
  ]
  let checked = 0
  for (const [src, dst] of pairs) {
    for (const [sport, dport] of [[0, 1], [40000, 8080], [65535, 65535]] as const) {
      const id = makeUniqueId()
      const v1 = encodeV1({ address: src, port: sport }, { address: dst, port: dport })
      t.same(addon.proxyHeader(1, src, sport, dst, dport, id, false), v1, `v1 ${src} ${dst}`)
      for (const crc32c of [false, true]) {
        const v2 = encodeV2({ command: 'proxy', transport: 'stream', src: { address: src, port: sport }, dst: { address: dst, port: dport }, tlvs: [uniqueIdTlv(id)], crc32c })
        t.same(addon.proxyHeader(2, src, sport, dst, dport, id, crc32c), v2, `v2 ${src} ${dst} crc32c=${crc32c}`)
        checked++
      }
    }
  }
  t.equal(checked, pairs.length * 6)
  t.equal(keyHash('10.0.0.1'), 3963167075, 'the key hash the C test pins')
})
