/**
 * Churn through the native plane: 10,000 connections with random patterns (early close,
 * half-close either way, reset either way, a refusing backend, slow readers, bulk both ways,
 * which the engine moves with splice(2) through its pipe pool) against an l4lb
 * running two engine threads. No crash, bytes exact wherever both sides stayed, and the
 * balancer's fd count and active counts back to where they started.
 */
import t from 'tap'
import net, { type Socket } from 'node:net'
import { readdirSync, readlinkSync } from 'node:fs'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { closeServer, eventually, listen, spawnL4lb, within } from '../helpers/index.js'
import { planeSkip } from '../helpers/planes.js'
import { xorshift32 } from '../balance/fixtures.js'

const CONNECTIONS = 10_000
const CONCURRENCY = 100

/** Patterns 0-4 and 6 alike; the bulk one (5) one time in 20, so the run stays a few seconds. */
function pattern(random: () => number): number {
  const r = random() % 20
  return r === 0 ? 5 : r % 6 === 5 ? 6 : r % 6
}

/** A backend that does what the client's first line asks: echo, send N then FIN, or reset. */
function backend(): net.Server {
  return net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy())
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      const nl = head.indexOf('\n')
      if (nl < 0) return
      socket.removeListener('data', onData)
      const [cmd, arg] = head.slice(0, nl).split(' ')
      const rest = Buffer.from(head.slice(nl + 1), 'latin1')
      if (cmd === 'echo') {
        if (rest.length > 0) socket.write(rest)
        socket.pipe(socket)
      } else if (cmd === 'send') {
        // half-close from the backend first; whatever the client sends after is read and dropped
        socket.end(Buffer.alloc(Number(arg), 0x61))
        socket.resume()
      } else {
        socket.resetAndDestroy()
      }
    }
    socket.on('data', onData)
    // a client that closes without a command gets our FIN too (echo's pipe does this itself)
    socket.once('end', () => {
      if (!socket.writableEnded) socket.end()
    })
  })
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/** What the fds are, by kind (socket, pipe, anon_inode:[eventpoll]...), to say what leaked. */
function fdKinds(pid: number): string {
  const kinds = new Map<string, number>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let kind = 'gone'
    try {
      kind = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/:\[\d+\]$/, '')
    } catch {}
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
  }
  return [...kinds].map(([k, n]) => `${k} ${n}`).join(', ')
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve(body))
    }).on('error', reject).end()
  })
}

interface Outcome {
  exact: boolean
  checked: boolean
}

/** One connection with pattern `kind`; resolves when the client side is done. */
function oneConnection(port: number, source: string, kind: number, random: () => number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket: Socket = net.connect({ port, host: '127.0.0.1', localAddress: source, allowHalfOpen: true })
    const chunks: Buffer[] = []
    let size = 0
    let settled = false
    const done = (outcome: Outcome): void => {
      if (settled) return
      settled = true
      socket.destroy()
      resolve(outcome)
    }
    socket.on('error', () => done({ exact: true, checked: false }))
    socket.on('close', () => done({ exact: true, checked: false }))
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      size += c.length
    })
    socket.once('connect', () => {
      switch (kind) {
        case 0: // early close, nothing sent
          return done({ exact: true, checked: false })
        case 1: { // client resets after sending a little
          socket.write('echo\nabc')
          setImmediate(() => {
            socket.resetAndDestroy()
            done({ exact: true, checked: false })
          })
          return
        }
        case 2: { // echo, client half-closes; the echo must be exact, then the backend's FIN
          const payload = Buffer.alloc(1 + (random() % 20_000), kind + 0x30)
          socket.end(Buffer.concat([Buffer.from('echo\n'), payload]))
          socket.once('end', () => done({ exact: Buffer.concat(chunks).equals(payload), checked: true }))
          return
        }
        case 3: { // backend half-closes first after N bytes; the client then still sends
          const n = 1 + (random() % 20_000)
          socket.write(`send ${n}\n`)
          socket.once('end', () => {
            socket.end('after the backend FIN')
            done({ exact: size === n, checked: true })
          })
          return
        }
        case 4: // backend resets
          socket.write('reset\n')
          return
        case 5: { // bulk both ways through splice: half a MiB or so echoed, client half-closes mid-flight
          const payload = Buffer.alloc(64 * 1024 + (random() % (448 * 1024)))
          for (let i = 0; i + 4 <= payload.length; i += 4096) payload.writeUInt32LE(random(), i)
          socket.end(Buffer.concat([Buffer.from('echo\n'), payload]))
          socket.once('end', () => done({ exact: Buffer.concat(chunks).equals(payload), checked: true }))
          return
        }
        default: { // slow reader: nothing read for a while, then all of it
          const n = 128 * 1024 + (random() % (128 * 1024))
          socket.pause()
          socket.write(`send ${n}\n`)
          setTimeout(() => {
            socket.once('end', () => {
              socket.end()
              done({ exact: size === n, checked: true })
            })
            socket.resume()
          }, 10 + (random() % 40))
        }
      }
    })
  })
}

t.test('10,000 connections of random patterns: no crash, exact bytes, fds back to baseline', { skip: planeSkip('native') }, async (t) => {
  const servers = [backend(), backend()]
  const ports = await Promise.all(servers.map((s) => listen(s)))
  t.teardown(() => Promise.all(servers.map((s) => closeServer(s))))
  const refusing = net.createServer()
  const deadPort = await listen(refusing)
  await closeServer(refusing)
  const lb = await spawnL4lb([
    '-l', '127.0.0.1:0', '--check', 'none', '--data-plane', 'native', '--threads', '2', '--balance', 'round-robin',
    '-b', `127.0.0.1:${ports[0]}`, '-b', `127.0.0.1:${ports[1]}`, '-b', `127.0.0.1:${deadPort}`,
    '--admin', '127.0.0.1:0', '--idle-timeout', '10s',
  ])
  t.teardown(() => lb.stop())
  const adminLine = await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const adminPort = Number(String(adminLine.admin).split(':').pop())
  const pid = lb.proc.pid!
  const port = lb.ports[0]!
  const baseline = fdCount(pid)
  const baselineKinds = fdKinds(pid)

  const random = xorshift32(0xc0ffee)
  let next = 0
  let checked = 0
  let inexact = 0
  const started = Date.now()
  const worker = async (): Promise<void> => {
    while (next < CONNECTIONS) {
      const i = next++
      // own 127.x sources: two reuseport listeners, and clients must never get the listener's port
      const source = `127.${20 + (i % 50)}.${(i >> 8) & 0xff}.${(i & 0xff) || 1}`
      const outcome = await within(20_000, `connection ${i}`, oneConnection(port, source, pattern(random), random))
      if (outcome.checked) checked++
      if (!outcome.exact) inexact++
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  t.comment(`${CONNECTIONS} connections in ${Date.now() - started} ms`)
  t.equal(inexact, 0, `bytes exact on all ${checked} connections where both sides stayed`)
  t.ok(checked > CONNECTIONS / 3, `${checked} connections checked byte for byte`)
  t.equal(lb.proc.exitCode, null, 'l4lb is still running')

  const status = await eventually('every connection closed', async () => {
    const s = JSON.parse(await get(adminPort, '/status')) as { services: Array<{ activeConnections: number; backends: Array<{ activeConnections: number; connectionsTotal: number }> }> }
    const service = s.services[0]!
    if (service.activeConnections !== 0) throw new Error(`${service.activeConnections} still active`)
    return service
  }, 15_000, 100)
  t.same(status.backends.map((b) => b.activeConnections), [0, 0, 0], 'live counts back to 0 on every backend')
  const total = status.backends.reduce((n, b) => n + b.connectionsTotal, 0)
  t.ok(total >= CONNECTIONS * 0.6, `${total} connections reached a backend (the rest were closed or reset before)`)
  await sleep(200)
  // pooled splice pipes are closed once an engine thread has had no connection for a second
  let after = fdCount(pid)
  for (const deadline = Date.now() + 5000; after > baseline && Date.now() < deadline; after = fdCount(pid)) await sleep(100)
  if (after > baseline) t.comment(`fds now: ${fdKinds(pid)}; at the baseline: ${baselineKinds}`)
  t.ok(after <= baseline, `fds ${after} <= baseline ${baseline}`)
  const metrics = await get(adminPort, '/metrics')
  t.match(metrics, /l4lb_/, 'metrics still served')
})
