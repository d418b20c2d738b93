/**
 * Test helpers for the PROXY protocol: a backend that parses the header with lib/proxy-protocol
 * and says what it saw.
 */
import net, { type Server, type Socket } from 'node:net'
import { acceptProxy, type ProxyHeader } from '../../lib/proxy-protocol/index.js'
import { closeServer, eventually, listen } from './index.js'

export interface Seen {
  header: ProxyHeader
  /** Every client byte after the header, in order. */
  data: Buffer
}

/**
 * A backend that speaks first (like MySQL): it parses the PROXY header with the module, answers
 * at once with the source it saw, then echoes. It never waits for client bytes before answering,
 * so a balancer that held the header back until the client spoke would hang the test.
 */
export class ProxyBackend {
  readonly server: Server
  readonly seen: Seen[] = []
  readonly sockets = new Set<Socket>()
  port = 0
  constructor(readonly name: string) {
    this.server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
      acceptProxy(socket, { timeoutMs: 3000 }).then(
        ({ header, rest }) => {
          socket.on('error', () => socket.destroy())
          const seen: Seen = { header, data: Buffer.from(rest) }
          this.seen.push(seen)
          const src = header.source ? `${header.source.address} ${header.source.port}` : 'none'
          socket.write(`${this.name} ${src}\n`)
          if (rest.length > 0) socket.write(rest)
          socket.on('data', (chunk: Buffer) => {
            seen.data = Buffer.concat([seen.data, chunk])
            socket.write(chunk)
          })
          socket.on('end', () => socket.end())
          socket.resume()
        },
        () => {},
      )
    })
  }

  async start(host = '127.0.0.1'): Promise<this> {
    this.port = await listen(this.server, host)
    return this
  }

  get address(): string {
    const a = this.server.address() as net.AddressInfo
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await closeServer(this.server)
  }
}

/** Resolves once something accepts connections on host:port; rejects after `timeoutMs`. */
export async function waitConnectable(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  await eventually(`something listening on ${host}:${port}`, () => new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  }), timeoutMs, 50)
}
