/**
 * Churn through the native plane: 10,000 connections with random patterns (early close,
 * half-close either way, reset either way, a refusing backend, slow readers) against an l4lb
 * running two engine threads. No crash, bytes exact wherever both sides stayed, and the
 * balancer's fd count and active counts back to where they started.
 */
import t from 'tap'
import net, { type Socket } from 'node:net'
import { readdirSync } from 'node:fs'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { closeServer, eventually, listen, spawnL4lb, within } from '../helpers/index.js'
import { planeSkip } from '../helpers/planes.js'
import { xorshift32 } from '../balance/fixtures.js'

const CONNECTIONS = 10_000
const CONCURRENCY = 100

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
      const outcome = await within(20_000, `connection ${i}`, oneConnection(port, source, random() % 6, random))
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
  const after = await eventually('fds back to baseline', () => {
    const n = fdCount(pid)
    if (n > baseline) throw new Error(`${n} fds, baseline ${baseline}`)
    return n
  }, 5000, 100)
  t.ok(after <= baseline, `fds ${after} <= baseline ${baseline}`)
  const metrics = await get(adminPort, '/metrics')
  t.match(metrics, /l4lb_/, 'metrics still served')
})
