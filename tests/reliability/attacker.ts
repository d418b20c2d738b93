/**
 * The attacking side of proxy-flood.test.ts, in its own process so that its 1,500 sockets and
 * timers lag its own event loop, not the legitimate client's (on one machine they would otherwise
 * share one loop, and a late 'connect' there looks like l4lb being slow).
 *
 * argv: port garbage slowloris attackMs deadlineMs. Prints one JSON line with what it saw, then
 * exits. Sources: garbage from 127.72.x.y, slowloris from 127.71.x.y.
 */
import net, { type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { ending, pooled, source } from './helpers.js'

const [port, garbageCount, slowCount, attackMs, deadlineMs] = process.argv.slice(2).map(Number) as [number, number, number, number, number]

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')
/** A complete, valid v2 header: slowloris trickles it and never gets to its end in time. */
export const V2_HEADER = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x0c, 203, 0, 113, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x00, 0x50])])

function garbage(i: number): Buffer {
  switch (i % 6) {
    case 0: return Buffer.from(Array.from({ length: 64 }, (_, k) => (i * 31 + k * 17) & 0xff))
    case 1: return Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n')
    case 2: return Buffer.from('PROXY TCP4 203.0.113.x 192.0.2.1 1 2\r\nhello')
    case 3: { const b = Buffer.from(V2_HEADER); b.writeUInt16BE(60_000, 14); return Buffer.concat([b, Buffer.alloc(100)]) }
    case 4: return Buffer.concat([V2_SIGNATURE, Buffer.from([0x99, 0x99, 0, 0])])
    default: return Buffer.from(`PROXY ${'A'.repeat(200)}\r\n`)
  }
}

function connectFrom(localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress })
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error('connect timeout'))
    }, 5000)
    s.once('connect', () => {
      clearTimeout(timer)
      s.removeListener('error', reject)
      s.on('error', () => {})
      resolve(s)
    })
    s.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

let attacking = true
const slowLifetimesMs: number[] = []
let slowConnectErrors = 0
let slowReplies = 0

async function slowloris(i: number): Promise<void> {
  while (attacking) {
    let s: Socket
    try {
      s = await connectFrom(source(71, i))
    } catch {
      slowConnectErrors++
      await sleep(100)
      continue
    }
    const ended = ending(s)
    const started = Date.now()
    let closed = false
    void ended.then((e) => {
      closed = true
      if (e.bytes > 0) slowReplies++
    })
    for (let sent = 0; !closed && attacking && sent < V2_HEADER.length - 1; sent++) {
      s.write(V2_HEADER.subarray(sent, sent + 1))
      await Promise.race([sleep(200), ended])
    }
    if (closed) slowLifetimesMs.push(Date.now() - started)
    s.destroy()
    await sleep(50)
  }
}

const started = Date.now()
const slow = Array.from({ length: slowCount }, (_, i) => slowloris(i))
const endings = await pooled(Array.from({ length: garbageCount }, (_, i) => i), 100, async (i) => {
  let s: Socket
  try {
    s = await connectFrom(source(72, i))
  } catch (err) {
    return { bytes: 0, how: `connect: ${(err as Error).message}`, afterMs: -1 }
  }
  s.write(garbage(i))
  const timeout = sleep(deadlineMs + 4000).then(() => ({ bytes: 0, how: 'not closed', afterMs: -1 }))
  const e = await Promise.race([ending(s), timeout])
  s.destroy()
  return e
})
await sleep(Math.max(0, attackMs - (Date.now() - started)))
attacking = false
await Promise.all(slow)
process.stdout.write(JSON.stringify({
  garbageNotClosed: endings.filter((e) => e.afterMs < 0).map((e) => e.how).slice(0, 5),
  garbageNotClosedCount: endings.filter((e) => e.afterMs < 0).length,
  garbageRepliedTo: endings.filter((e) => e.bytes > 0).length,
  slowCut: slowLifetimesMs.length,
  slowLongestMs: Math.max(0, ...slowLifetimesMs),
  slowMedianMs: slowLifetimesMs.sort((a, b) => a - b)[Math.floor(slowLifetimesMs.length / 2)] ?? 0,
  slowConnectErrors,
  slowReplies,
  elapsedMs: Date.now() - started,
}) + '\n')
