import type { Test } from 'tap'
import net, { type Socket } from 'node:net'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  EchoBackend, connect, eventually, hangingBackend, readAll, readLine, rssBytes, spawnL4lb, whoAnswers, within, listen, closeServer,
} from '../helpers/index.js'
import { planeArgs, planeSkip, type Plane } from '../helpers/planes.js'

async function backends(t: Test, names: string[], host = '127.0.0.1'): Promise<EchoBackend[]> {
  const list = await Promise.all(names.map((n) => new EchoBackend(n).start(host)))
  t.teardown(() => Promise.all(list.map((b) => b.stop())))
  return list
}

async function l4lbOn(t: Test, args: string[]) {
  const p = await spawnL4lb(['-l', '127.0.0.1:0', '--check', 'none', ...args])
  t.teardown(() => p.stop())
  return p
}

/** Writes `chunk` repeatedly until `total` bytes, honouring backpressure, then ends the socket. */
function send(socket: Socket, chunk: Buffer, total: number): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length
        if (!socket.write(chunk)) return void socket.once('drain', pump)
      }
      socket.end()
      resolve()
    }
    socket.once('close', () => resolve())
    pump()
  })
}

// The i-th distinct client source in 127.0.0.0/8 (avoids 127.0.0.x, used by listeners).
function source(i: number): string {
  return `127.${1 + (i >> 16)}.${(i >> 8) & 0xff}.${(i & 0xff) || 1}`
}

/**
 * Every TCP test, on one data plane. tcp.test.ts runs it on `node`, tcp-native.test.ts on
 * `native` (two files so tap runs the planes side by side, each within its time limit).
 */
export function tcpTests(t: Test, plane: Plane): void {
  t.test(`${plane} plane`, { skip: planeSkip(plane) }, async (t) => {
    const l4lb = (t: Test, args: string[]) => l4lbOn(t, [...planeArgs(plane), ...args])

    t.test('clients from many source addresses are spread over every backend (Maglev)', async (t) => {
      const bs = await backends(t, ['a', 'b', 'c'])
      const lb = await l4lb(t, bs.flatMap((b) => ['-b', b.address]))
      const counts: Record<string, number> = {}
      for (let i = 0; i < 300; i++) {
        const name = await whoAnswers(lb.ports[0]!, source(i * 7 + 3))
        counts[name] = (counts[name] ?? 0) + 1
      }
      t.same(Object.keys(counts).sort(), ['a', 'b', 'c'], 'every backend gets clients')
      for (const [name, n] of Object.entries(counts)) t.ok(n >= 60 && n <= 140, `backend ${name} got ${n}/300 (expect ~100)`)
    })

    t.test('the same client address lands on the same backend over 100 connections', async (t) => {
      const bs = await backends(t, ['a', 'b', 'c'])
      const lb = await l4lb(t, bs.flatMap((b) => ['-b', b.address]))
      for (const src of ['127.9.0.1', '127.9.0.2', '127.9.0.3']) {
        const seen = new Set<string>()
        for (let i = 0; i < 100; i++) seen.add(await whoAnswers(lb.ports[0]!, src))
        t.equal(seen.size, 1, `${src} always answered by ${[...seen].join(',')}`)
      }
    })

    t.test('round-robin with weights 3:1 follows the weights', async (t) => {
      const bs = await backends(t, ['heavy', 'light'])
      const lb = await l4lb(t, ['-b', `${bs[0]!.address},weight=3`, '-b', bs[1]!.address, '--balance', 'round-robin'])
      const counts: Record<string, number> = { heavy: 0, light: 0 }
      for (let i = 0; i < 40; i++) counts[await whoAnswers(lb.ports[0]!)]!++
      t.same(counts, { heavy: 30, light: 10 })
    })

    t.test('a dead backend is skipped: the connect is retried on the next backend, no client fails', async (t) => {
      const bs = await backends(t, ['alive'])
      const dead = net.createServer()
      const deadPort = await listen(dead)
      await closeServer(dead) // the port is now refused
      const lb = await l4lb(t, ['-b', bs[0]!.address, '-b', `127.0.0.1:${deadPort}`, '--retries', '2'])
      for (let i = 0; i < 30; i++) t.equal(await whoAnswers(lb.ports[0]!, source(i + 1000)), 'alive')
      const retried = await lb.waitForLog('a retried connection', (l) => l.msg === 'connection closed' && l.attempts === 2)
      t.equal(retried.backend, bs[0]!.address)
    })

    t.test('bytes a client sends while its backend connect hangs wait unread, and reach the backend tried next', async (t) => {
      const CONNECT_TIMEOUT_MS = 1500
      const [alive] = await backends(t, ['alive'])
      const hanging = await hangingBackend(t)
      // Round-robin over two primaries: one of two connections tries the hanging one first.
      const lb = await l4lb(t, ['-b', `127.0.0.1:${hanging}`, '-b', alive!.address, '--balance', 'round-robin', '--retries', '1', '--connect-timeout', `${CONNECT_TIMEOUT_MS}ms`])
      const connections: Array<{ client: string; pendingAtWrite: boolean }> = []
      for (let i = 0; i < 2; i++) {
        const acceptedBefore = alive!.accepted
        const socket = await connect(lb.ports[0]!, '127.0.0.1', source(i + 2000))
        await new Promise<void>((resolve, reject) => socket.write('early bytes\n', (err) => (err ? reject(err) : resolve())))
        // The kernel has the bytes; if no backend has taken this connection yet, they wait unread.
        connections.push({ client: `${socket.localAddress}:${socket.localPort}`, pendingAtWrite: alive!.accepted === acceptedBefore })
        socket.end()
        const { data } = await within(CONNECT_TIMEOUT_MS + 10_000, 'echo', readAll(socket))
        t.equal(data.toString(), 'alive\nearly bytes\n', `connection ${i}: the early bytes arrive after the greeting`)
      }
      const closes = await eventually('both close lines', () => {
        const lines = lb.logs.filter((l) => l.msg === 'connection closed')
        return lines.length >= 2 ? lines : undefined
      })
      const retried = closes.filter((l) => l.attempts === 2)
      t.equal(retried.length, 1, 'exactly one connection was retried')
      const line = retried[0]!
      t.match(line, { backend: alive!.address, bytesIn: 'early bytes\n'.length }, 'the retry carried the early bytes to the live backend')
      t.ok(Number(line.durationMs) >= CONNECT_TIMEOUT_MS, `it waited out the hanging connect first (${line.durationMs} ms)`)
      const ours = connections.find((c) => c.client === line.client)
      t.ok(ours, `the retried connection is one of ours (${String(line.client)})`)
      t.equal(ours?.pendingAtWrite, true, 'its bytes were written while no backend had it: they were pending')
    })

    t.test('when no backend accepts, the client is closed promptly and the balancer keeps running', async (t) => {
      const dead = net.createServer()
      const deadPort = await listen(dead)
      await closeServer(dead)
      // A 30 s connect timeout: a refusal that was waited out instead of acted on would show.
      const lb = await l4lb(t, ['-b', `127.0.0.1:${deadPort}`, '--connect-timeout', '30s'])
      const started = Date.now()
      const socket = await connect(lb.ports[0]!)
      const { data } = await within(15_000, 'close', readAll(socket))
      t.equal(data.length, 0)
      t.ok(Date.now() - started < 15_000, `closed after ${Date.now() - started} ms, not after the 30 s connect timeout`)
      const line = await lb.waitForLog('connect-failed', (l) => l.reason === 'connect-failed')
      t.equal(line.attempts, 1, 'one backend, one attempt')
    })

    t.test('half-close is passed through both ways', async (t) => {
      // Backend reads until the client's FIN, then answers with the count and closes.
      const counter = new EchoBackend('counter', (socket) => {
        let n = 0
        socket.on('data', (c: Buffer) => (n += c.length))
        socket.on('end', () => socket.end(`got ${n} bytes\n`))
      })
      await counter.start()
      t.teardown(() => counter.stop())
      const lb = await l4lb(t, ['-b', counter.address])
      const socket = await connect(lb.ports[0]!)
      socket.end('x'.repeat(1000))
      const { data } = await within(5000, 'reply after FIN', readAll(socket))
      t.equal(data.toString(), 'got 1000 bytes\n', 'the reply arrives after the client half-closed')

      // The other way: the backend closes its side first; the client can still send.
      let received = ''
      const early = new EchoBackend('early', (socket) => {
        socket.end('bye\n')
        socket.on('data', (c: Buffer) => (received += c.toString()))
      })
      await early.start()
      t.teardown(() => early.stop())
      const lb2 = await l4lb(t, ['-b', early.address])
      const s2 = await connect(lb2.ports[0]!)
      const ended = new Promise<void>((resolve) => s2.once('end', () => resolve()))
      const line = await readLine(s2)
      t.equal(line, 'bye')
      s2.resume()
      await within(3000, 'FIN from the backend side', ended)
      s2.end('still talking\n')
      await eventually('backend to receive data after its own FIN', () => received === 'still talking\n')
      t.equal(received, 'still talking\n', 'data flows client→backend after backend→client was closed')
    })

    t.test('a 64 MiB transfer each way arrives byte-exact', async (t) => {
      const SIZE = 64 * 1024 * 1024
      const pattern = (seed: number): Buffer => {
        const b = Buffer.alloc(1024 * 1024)
        for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((Math.imul(i + seed, 2654435761) >>> 0), i)
        return b
      }
      let backendDigest = ''
      const sink = new EchoBackend('sink', (socket) => {
        const hash = createHash('sha256')
        socket.on('data', (c: Buffer) => hash.update(c))
        socket.on('end', () => (backendDigest = hash.digest('hex')))
        // Send 64 MiB the other way at the same time, respecting backpressure.
        void send(socket, pattern(2), SIZE)
      })
      await sink.start()
      t.teardown(() => sink.stop())
      const lb = await l4lb(t, ['-b', sink.address])
      const socket = await connect(lb.ports[0]!)
      const up = pattern(1)
      const expectUp = createHash('sha256')
      const expectDown = createHash('sha256')
      for (let i = 0; i < SIZE / up.length; i++) {
        expectUp.update(up)
        expectDown.update(pattern(2))
      }
      const gotDown = createHash('sha256')
      let downBytes = 0
      socket.on('data', (c: Buffer) => {
        gotDown.update(c)
        downBytes += c.length
      })
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      await send(socket, up, SIZE)
      await within(60_000, 'both directions to finish', closed)
      t.equal(downBytes, SIZE, 'client received 64 MiB')
      t.equal(gotDown.digest('hex'), expectDown.digest('hex'), 'backend→client checksum matches')
      await eventually('backend digest', () => backendDigest !== '')
      t.equal(backendDigest, expectUp.digest('hex'), 'client→backend checksum matches')
      const line = await lb.waitForLog('connection closed', (l) => l.msg === 'connection closed')
      t.equal(line.bytesIn, SIZE)
      t.equal(line.bytesOut, SIZE)
    })

    t.test('backend→client bytes stay exact when writes to a stalled client go pending', async (t) => {
      // The backend trickles small pieces (8–16 KiB, one a millisecond) of a stream with no period
      // (each 32-bit word is its own index, mixed) to a client that reads nothing for a second: the
      // kernel buffers fill and the balancer's writes go pending while each is smaller than its
      // high-water mark, so it goes on reading. A read buffer reused while a write from it was
      // still pending would show up as a wrong digest.
      const SIZE = 8 * 1024 * 1024
      const stream = Buffer.allocUnsafe(SIZE)
      for (let i = 0; i < SIZE; i += 4) stream.writeUInt32LE((Math.imul(i >>> 2, 2654435761) ^ (i >>> 13)) >>> 0, i)
      const expected = createHash('sha256').update(stream).digest('hex')
      const source = new EchoBackend('source', (socket) => {
        let offset = 0
        let k = 0
        const timer = setInterval(() => {
          const length = Math.min(SIZE - offset, 8192 + ((k++ * 7919) % 8192))
          socket.write(stream.subarray(offset, offset + length))
          offset += length
          if (offset < SIZE) return
          clearInterval(timer)
          socket.end()
        }, 1)
        socket.once('close', () => clearInterval(timer))
      })
      await source.start()
      t.teardown(() => source.stop())
      const lb = await l4lb(t, ['-b', source.address])
      const socket = await connect(lb.ports[0]!)
      socket.pause()
      await sleep(1000)
      const got = createHash('sha256')
      let received = 0
      socket.on('data', (c: Buffer) => {
        got.update(c)
        received += c.length
      })
      socket.resume()
      await within(60_000, 'the whole stream', new Promise((resolve) => socket.once('end', resolve)))
      socket.destroy()
      t.equal(received, SIZE, `received ${SIZE} bytes`)
      t.equal(got.digest('hex'), expected, 'digest matches')
    })

    t.test('a slow reader does not make the balancer buffer without bound', async (t) => {
      const firehose = new EchoBackend('firehose', (socket) => void send(socket, Buffer.alloc(1024 * 1024, 7), 512 * 1024 * 1024))
      await firehose.start()
      t.teardown(() => firehose.stop())
      const lb = await l4lb(t, ['-b', firehose.address])
      const before = await rssBytes(lb.proc.pid!)
      const socket = await connect(lb.ports[0]!)
      socket.pause() // the client reads nothing
      await sleep(1500)
      const during = await rssBytes(lb.proc.pid!)
      socket.destroy()
      t.ok(during - before < 64 * 1024 * 1024, `RSS grew ${((during - before) / 1048576).toFixed(1)} MiB while a 512 MiB sender met a stalled reader`)
    })

    t.test('an idle connection is closed after --idle-timeout', async (t) => {
      const bs = await backends(t, ['a'])
      const lb = await l4lb(t, ['-b', bs[0]!.address, '--idle-timeout', '300ms'])
      const socket = await connect(lb.ports[0]!)
      t.equal(await readLine(socket), 'a')
      const started = Date.now()
      socket.resume()
      await within(3000, 'idle close', new Promise((resolve) => socket.once('end', resolve)))
      const waited = Date.now() - started
      t.ok(waited >= 250 && waited < 2000, `closed after ${waited}ms idle`)
      const line = await lb.waitForLog('idle-timeout', (l) => l.reason === 'idle-timeout')
      t.equal(line.backend, bs[0]!.address)

      // Activity keeps it open: a line every 100ms for 600ms survives a 300ms idle timeout.
      const busy = await connect(lb.ports[0]!)
      t.equal(await readLine(busy), 'a')
      for (let i = 0; i < 6; i++) {
        busy.write('ping\n')
        t.equal(await readLine(busy), 'ping')
        await sleep(100)
      }
      t.notOk(busy.destroyed, 'an active connection is not idle')
      busy.destroy()
    })

    t.test('--max-conns: the connection over the limit is closed at once and counted', async (t) => {
      const bs = await backends(t, ['a'])
      const lb = await l4lb(t, ['-b', bs[0]!.address, '--max-conns', '2', '--log-level', 'debug'])
      const held: Socket[] = []
      for (let i = 0; i < 2; i++) {
        const s = await connect(lb.ports[0]!)
        t.equal(await readLine(s), 'a')
        held.push(s)
      }
      const third = await connect(lb.ports[0]!)
      const { data } = await within(2000, 'third connection closed', readAll(third))
      t.equal(data.length, 0, 'the third connection gets nothing')
      await lb.waitForLog('max-conns refusal', (l) => l.reason === 'max-conns')
      held[0]!.destroy()
      await lb.waitForLog('a closed connection', (l) => l.msg === 'connection closed')
      const again = await connect(lb.ports[0]!)
      t.equal(await readLine(again), 'a', 'a slot freed up is usable again')
      again.destroy()
      held[1]!.destroy()
    })

    t.test('a client reset is passed to the backend as a reset', async (t) => {
      let backendError = ''
      const b = new EchoBackend('r', (socket) => {
        socket.write('r\n')
        socket.removeAllListeners('error')
        socket.on('error', (err: NodeJS.ErrnoException) => (backendError = err.code ?? 'error'))
      })
      await b.start()
      t.teardown(() => b.stop())
      const lb = await l4lb(t, ['-b', b.address])
      const s = await connect(lb.ports[0]!)
      t.equal(await readLine(s), 'r')
      s.resetAndDestroy()
      await eventually('the backend to see ECONNRESET', () => backendError === 'ECONNRESET')
      const line = await lb.waitForLog('client-reset', (l) => l.msg === 'connection closed')
      t.equal(line.reason, 'client-reset')
    })

    t.test('IPv6: listening on [::1] and balancing to an IPv6 backend', async (t) => {
      const b = await new EchoBackend('six').start('::1')
      t.teardown(() => b.stop())
      const lb = await spawnL4lb(['-l', '[::1]:0', '-b', b.address, '--check', 'none', ...planeArgs(plane)])
      t.teardown(() => lb.stop())
      t.equal(await whoAnswers(lb.ports[0]!, undefined, '::1'), 'six')
      const line = await lb.waitForLog('v6 connection', (l) => l.msg === 'connection closed')
      t.match(line.client, /^\[::1\]:\d+$/)
    })

    t.test('SIGTERM lets an open connection finish, then exits 0', async (t) => {
      const bs = await backends(t, ['a'])
      const lb = await l4lb(t, ['-b', bs[0]!.address, '--drain-timeout', '5s'])
      const s = await connect(lb.ports[0]!)
      t.equal(await readLine(s), 'a')
      lb.proc.kill('SIGTERM')
      await lb.waitForLog('draining', (l) => l.msg === 'stopping: draining connections')
      s.write('still here\n')
      t.equal(await readLine(s), 'still here', 'the established connection still works while draining')
      const refused = await new Promise<string>((resolve) => {
        const c = net.connect({ port: lb.ports[0]!, host: '127.0.0.1' })
        c.once('connect', () => {
          c.destroy()
          resolve('connected')
        })
        c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
      })
      t.equal(refused, 'ECONNREFUSED', 'no new connections while draining')
      s.end()
      t.equal(await within(5000, 'exit', lb.exited), 0)
    })

    t.test('SIGTERM: connections still open at --drain-timeout are closed, exit 0; a second signal exits at once', async (t) => {
      const bs = await backends(t, ['a'])
      const lb = await l4lb(t, ['-b', bs[0]!.address, '--drain-timeout', '300ms'])
      const s = await connect(lb.ports[0]!)
      t.equal(await readLine(s), 'a')
      const started = Date.now()
      lb.proc.kill('SIGTERM')
      const { data } = await within(5000, 'the held connection to be closed', readAll(s))
      t.equal(data.length, 0)
      t.equal(await within(5000, 'exit', lb.exited), 0)
      const waited = Date.now() - started
      t.ok(waited >= 250 && waited < 3000, `closed after the drain timeout (${waited}ms)`)

      const lb2 = await l4lb(t, ['-b', bs[0]!.address, '--drain-timeout', '30s'])
      const s2 = await connect(lb2.ports[0]!)
      t.equal(await readLine(s2), 'a')
      lb2.proc.kill('SIGTERM')
      await lb2.waitForLog('draining', (l) => l.msg === 'stopping: draining connections')
      const second = Date.now()
      lb2.proc.kill('SIGINT')
      t.equal(await within(5000, 'exit on the second signal', lb2.exited), 1, 'the second signal exits at once (code 1)')
      t.ok(Date.now() - second < 2000, 'without waiting for the 30s drain')
      s2.destroy()
    })
  })
}
