import t from 'tap'
import { Address4, Address6 } from 'ip-address'
import { CidrList, parseIpInto } from '../../lib/address/index.js'

// The allocation-free parser must agree with ip-address (the reference parser) on every form.
function reference(ip: string): { family: 0 | 4 | 6; words: number[] } {
  const text = ip.split('%')[0]!
  if (Address4.isValid(text) && /^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}$/.test(text)) {
    const bytes = new Address4(text).toArray()
    return { family: 4, words: [((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0] }
  }
  if (!text.includes(':') || !Address6.isValid(text) || text.includes('/') || /(^|[:.])0[0-9]/.test(text.slice(text.lastIndexOf(':')))) return { family: 0, words: [] }
  const b = new Address6(text).toUnsignedByteArray()
  const bytes = new Array<number>(16 - b.length).fill(0).concat(b)
  const words = [0, 1, 2, 3].map((i) => ((bytes[4 * i]! << 24) | (bytes[4 * i + 1]! << 16) | (bytes[4 * i + 2]! << 8) | bytes[4 * i + 3]!) >>> 0)
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return { family: 4, words: [words[3]!] }
  return { family: 6, words }
}

const forms: Array<[string, 0 | 4 | 6, number[]]> = [
  ['0.0.0.0', 4, [0]],
  ['10.1.2.3', 4, [0x0a010203]],
  ['255.255.255.255', 4, [0xffffffff]],
  ['127.0.0.1', 4, [0x7f000001]],
  ['::', 6, [0, 0, 0, 0]],
  ['::1', 6, [0, 0, 0, 1]],
  ['1::', 6, [0x00010000, 0, 0, 0]],
  ['2001:db8::8:800:200c:417a', 6, [0x20010db8, 0, 0x00080800, 0x200c417a]],
  ['2001:DB8:0:0:8:800:200C:417A', 6, [0x20010db8, 0, 0x00080800, 0x200c417a]],
  ['fe80::1%eth0', 6, [0xfe800000, 0, 0, 1]],
  ['::ffff:10.0.0.1', 4, [0x0a000001]],
  ['::FFFF:10.0.0.1', 4, [0x0a000001]],
  ['0:0:0:0:0:ffff:a00:1', 4, [0x0a000001]],
  ['::ffff:a00:1', 4, [0x0a000001]],
  ['64:ff9b::192.0.2.33', 6, [0x0064ff9b, 0, 0, 0xc0000221]],
  ['1:2:3:4:5:6:7:8', 6, [0x00010002, 0x00030004, 0x00050006, 0x00070008]],
  ['1:2:3:4:5:6:1.2.3.4', 6, [0x00010002, 0x00030004, 0x00050006, 0x01020304]],
  // not addresses
  ['', 0, []],
  ['1.2.3', 0, []],
  ['1.2.3.4.5', 0, []],
  ['256.1.1.1', 0, []],
  ['01.2.3.4', 0, []],
  ['1.2.3.4 ', 0, []],
  ['a.b.c.d', 0, []],
  [':', 0, []],
  [':::', 0, []],
  ['1:::2', 0, []],
  ['1::2::3', 0, []],
  ['1:2:3:4:5:6:7:8:9', 0, []],
  ['1:2:3:4:5:6:7', 0, []],
  ['1:', 0, []],
  [':1', 0, []],
  ['12345::', 0, []],
  ['g::1', 0, []],
  ['1:2:3:4:5:6:7:1.2.3.4', 0, []],
  ['::1.2.3', 0, []],
  ['1::2:3:4:5:6:7:8', 0, []],
]

t.test('parseIpInto: every text form as ip-address reads it, mapped IPv4 as IPv4', async (t) => {
  const out = new Uint32Array(4)
  for (const [ip, family, words] of forms) {
    const got = parseIpInto(ip, out)
    t.equal(got, family, `${JSON.stringify(ip)}: family`)
    if (family !== 0) t.same([...out.subarray(0, family === 4 ? 1 : 4)], words, `${ip}: words`)
    const ref = reference(ip)
    t.equal(ref.family, family, `${JSON.stringify(ip)}: ip-address agrees on the family`)
  }
})

t.test('parseIpInto agrees with ip-address on 2,000 generated IPv6 addresses in compressed and full form', async (t) => {
  let seed = 12345
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0
    return seed % n
  }
  const out = new Uint32Array(4)
  let mismatches = 0
  for (let i = 0; i < 2000; i++) {
    // runs of zero groups make '::' compression likely
    const groups = Array.from({ length: 8 }, () => (rand(3) === 0 ? 0 : rand(0x10000)))
    const full = groups.map((g) => g.toString(16)).join(':')
    const compressed = new Address6(full).correctForm()
    for (const text of [full, compressed]) {
      const family = parseIpInto(text, out)
      const ref = reference(text)
      if (family !== ref.family || [...out.subarray(0, family === 4 ? 1 : 4)].join() !== ref.words.join()) {
        mismatches++
        if (mismatches < 5) t.fail(`${text}: got ${family} ${[...out].join()}, ip-address ${ref.family} ${ref.words.join()}`)
      }
    }
  }
  t.equal(mismatches, 0)
})

interface Case { cidrs: string[]; ip: string; inside: boolean }
const cases: Case[] = [
  { cidrs: ['10.0.0.0/8'], ip: '10.255.1.2', inside: true },
  { cidrs: ['10.0.0.0/8'], ip: '11.0.0.1', inside: false },
  { cidrs: ['10.0.0.0/8'], ip: '::ffff:10.9.9.9', inside: true },
  { cidrs: ['192.0.2.7'], ip: '192.0.2.7', inside: true },
  { cidrs: ['192.0.2.7'], ip: '192.0.2.8', inside: false },
  { cidrs: ['0.0.0.0/0'], ip: '203.0.113.1', inside: true },
  { cidrs: ['0.0.0.0/0'], ip: '::1', inside: false },
  { cidrs: ['::/0'], ip: '::1', inside: true },
  { cidrs: ['::/0'], ip: '1.2.3.4', inside: false },
  { cidrs: ['2001:db8::/32'], ip: '2001:db8:ffff::1', inside: true },
  { cidrs: ['2001:db8::/32'], ip: '2001:db9::1', inside: false },
  { cidrs: ['2001:db8:0:1::/64'], ip: '2001:db8:0:1:ffff:ffff:ffff:ffff', inside: true },
  { cidrs: ['2001:db8:0:1::/64'], ip: '2001:db8:0:2::', inside: false },
  { cidrs: ['fe80::/10'], ip: 'fe80::1%eth0', inside: true },
  // a mapped block is an IPv4 block
  { cidrs: ['::ffff:10.0.0.0/104'], ip: '10.1.1.1', inside: true },
  { cidrs: ['::ffff:10.0.0.0/104'], ip: '11.1.1.1', inside: false },
  { cidrs: ['10.0.0.0/8', '2001:db8::/32'], ip: '2001:db8::5', inside: true },
  { cidrs: ['10.0.0.0/8'], ip: 'not-an-ip', inside: false },
  { cidrs: ['127.0.0.0/8'], ip: '127.200.3.4', inside: true },
  { cidrs: ['127.1.0.0/31'], ip: '127.1.0.1', inside: true },
  { cidrs: ['127.1.0.0/31'], ip: '127.1.0.2', inside: false },
]

t.test('CidrList.contains: IPv4, IPv6, mapped IPv4 and prefix edges', async (t) => {
  for (const c of cases) t.equal(new CidrList(c.cidrs).contains(c.ip), c.inside, `${c.ip} in ${c.cidrs.join(',')}`)
})
