import t from 'tap'
import net, { type Server, type Socket } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { BackendReader, splice } from '../../lib/tcp/splice.js'
import { closeServer, eventually, listen, within } from '../helpers/index.js'

/** An in-process proxy over splice(): every accepted client gets a backend connection and a reader. */
async function proxyTo(backendPort: number): Promise<{ port: number; server: Server; readers: BackendReader[]; clients: Socket[] }> {
  const readers: BackendReader[] = []
  const clients: Socket[] = []
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (client) => {
    const reader = new BackendReader()
    readers.push(reader)
    clients.push(client)
    client.on('error', () => {})
    const backend = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true, noDelay: true, onread: reader.onread })
    backend.once('connect', () => splice(client, backend, reader, { idleTimeoutMs: 0 }, () => {}))
  })
  const port = await listen(server)
  return { port, server, readers, clients }
}

/**
 * Sends `total` random bytes to each client in small writes (1 B to 12 KB, each after a
 * setImmediate, so the proxy reads small chunks into its shared buffer), then the sha256 of
 * those bytes as 64 hex characters.
 */
async function sourceServer(total: number): Promise<{ port: number; server: Server }> {
  const server = net.createServer((s) => {
    s.on('error', () => {})
    const hash = createHash('sha256')
    let left = total
    const pump = (): void => {
      if (s.destroyed) return
      if (left === 0) return void s.end(hash.digest('hex'))
      const chunk = randomBytes(Math.min(left, 1 + Math.floor(Math.random() * 12_000)))
      hash.update(chunk)
      left -= chunk.length
      if (s.write(chunk)) setImmediate(pump)
      else s.once('drain', pump)
    }
    pump()
  })
  return { port: await listen(server), server }
}

/**
 * Reads everything; a stalling client reads nothing until `resume` resolves, so the kernel's
 * buffers fill and the proxy's writes to it go pending while the other connections keep reading
 * through the shared buffer. Resolves with the digest received and the digest of the bytes before it.
 */
function receive(port: number, source: string, resume: Promise<void> | undefined): Promise<{ said: string; got: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: source })
    const chunks: Buffer[] = []
    socket.on('error', reject)
    if (resume) {
      socket.pause()
      void resume.then(() => socket.resume())
    }
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('end', () => {
      const all = Buffer.concat(chunks)
      resolve({ said: all.subarray(all.length - 64).toString('latin1'), got: createHash('sha256').update(all.subarray(0, all.length - 64)).digest('hex') })
    })
  })
}

t.test('many connections read through the one shared buffer and each gets exactly its own bytes', async (t) => {
  const source = await sourceServer(16 * 1024 * 1024)
  const proxy = await proxyTo(source.port)
  t.teardown(() => Promise.all([closeServer(proxy.server), closeServer(source.server)]))
  // Stalled readers resume once the proxy has writes pending to all four of them (the kernel
  // took no more), or after 45 s.
  const pending = new Set<Socket>()
  // stalled clients are the even ones, from 127.0.3.1, .3, .5, .7
  const stalledPort = (c: Socket): boolean => Number(c.remoteAddress?.split('.')[3]) % 2 === 1
  const resume = eventually('writes pending to the 4 stalled clients', () => {
    for (const c of proxy.clients) if (c.writableLength > 0 && stalledPort(c)) pending.add(c)
    return pending.size >= 4 || undefined
  }, 45_000, 20).then(() => undefined, () => undefined)
  const results = await within(120_000, '8 transfers of 16 MiB', Promise.all(
    Array.from({ length: 8 }, (_, i) => receive(proxy.port, `127.0.3.${i + 1}`, i % 2 === 0 ? resume : undefined)),
  ))
  t.equal(pending.size, 4, 'the proxy had writes pending to every stalled reader')
  results.forEach((r, i) => t.equal(r.got, r.said, `connection ${i}${i % 2 === 0 ? ' (stalled reader: writes went pending)' : ''}: bytes exact`))
})

t.test('an idle connection holds no read buffer; a bulk flow reads into one of its own and hands it back when it goes quiet', async (t) => {
  // The backend answers "small" with a short line and "bulk" with 8 MiB in 64 KiB writes.
  const server = net.createServer((s) => {
    s.on('error', () => {})
    s.on('data', (d: Buffer) => {
      if (d.toString().startsWith('small')) s.write('ok\n')
      else {
        const chunk = Buffer.alloc(64 * 1024, 0x61)
        let n = 128
        const pump = (): void => {
          while (n-- > 0) if (!s.write(chunk)) return void s.once('drain', pump)
          s.write('done\n')
        }
        pump()
      }
    })
  })
  const backendPort = await listen(server)
  const proxy = await proxyTo(backendPort)
  t.teardown(() => Promise.all([closeServer(proxy.server), closeServer(server)]))
  const client: Socket = net.connect({ host: '127.0.0.1', port: proxy.port, localAddress: '127.0.4.1' })
  t.teardown(() => client.destroy())
  let text = ''
  client.setEncoding('latin1').on('data', (d: string) => (text += d))
  client.write('small\n')
  await eventually('the small answer', () => text === 'ok\n' || undefined)
  const reader = proxy.readers[0]!
  t.equal(reader.holdsBuffer, false, 'after a small exchange the connection holds no buffer')

  let sawOwn = false
  let watching = true
  const watch = (): void => {
    if (reader.holdsBuffer) sawOwn = true
    if (watching) setImmediate(watch)
  }
  watch()
  client.write('bulk\n')
  await eventually('8 MiB and the last line', () => text.endsWith('done\n') || undefined, 30_000)
  watching = false
  t.equal(text.length, 3 + 128 * 64 * 1024 + 5, 'every byte of the bulk answer')
  t.ok(sawOwn, 'the bulk flow read into a buffer of its own')
  text = ''
  client.write('small\n')
  await eventually('the small answer after bulk', () => text === 'ok\n' || undefined)
  await sleep(10)
  t.equal(reader.holdsBuffer, false, 'the first small read handed the buffer back: idle again, no buffer held')
})
