#!/usr/bin/env node
// Bytes per tracked source in the admission tables (lib/flow): fills a TokenBuckets table
// (`--rate-per-ip`) with N sources, IPv4 and then IPv6, and the per-source open-connection map
// (`--max-conns-per-ip`) of an Admission, and reports (heap + array buffers) growth / N after
// a full GC. Run: npx tsc -p tsconfig.json && node --expose-gc perf/flow-memory.mjs [N]
import { TokenBuckets } from '../dist/lib/flow/limiter.js'
import { Admission } from '../dist/lib/flow/admit.js'

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc')
  process.exit(2)
}
const n = Number(process.argv[2] ?? 1 << 20)

function used() {
  globalThis.gc()
  globalThis.gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

// Sources as the data path sees them: a fresh string per connection, as socket.remoteAddress gives.
const v4 = (i) => `${10 + (i >>> 24)}.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`
const v6 = (i) => `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`

function measure(name, fill) {
  const before = used()
  const keep = fill()
  const after = used()
  console.log(`${name.padEnd(48)} ${((after - before) / n).toFixed(1).padStart(7)} bytes/source  (${n.toLocaleString('en')} sources, ${((after - before) / 2 ** 20).toFixed(1)} MiB)`)
  return keep
}

let now = 0
const clock = () => now
measure('TokenBuckets, IPv4 sources (int32 keys)', () => {
  const a = Admission.forTcp({ ratePerIp: 10 }, { now: clock, maxSources: n })
  for (let i = 0; i < n; i++) a.admit(v4(i))
  return a
})
measure('TokenBuckets, IPv6 sources (text keys)', () => {
  const a = Admission.forTcp({ ratePerIp: 10 }, { now: clock, maxSources: n })
  for (let i = 0; i < n; i++) a.admit(v6(i))
  return a
})
measure('per-source open counts (maxConnsPerIp), IPv4', () => {
  const a = Admission.forTcp({ maxConnsPerIp: 10 })
  for (let i = 0; i < n; i++) a.admit(v4(i))
  return a
})
const t = measure('TokenBuckets alone, full at the default 2^20 bound', () => {
  const b = new TokenBuckets({ ratePerSec: 10, now: clock })
  for (let i = 0; i < (1 << 20); i++) b.take(i | 0)
  return b
})
console.log(`(table size ${t.size.toLocaleString('en')}, node ${process.version})`)
