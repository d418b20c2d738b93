/**
 * UDP test helpers: echo backends that prefix replies with their name, and clients bound to a
 * chosen source address. Every wait is bounded; every socket is closed by whoever created it.
 */
import dgram, { type Socket } from 'node:dgram'
import { within } from './index.js'

export class UdpEchoBackend {
  readonly socket: Socket
  received = 0
  /** Client ports seen (the l4lb upstream sockets' ports). */
  readonly peers = new Set<number>()
  port = 0
  /** `host:port` as l4lb's --backend takes it (kept after stop). */
  address = ''
  #closed = false
  /** A name containing ":" makes an IPv6 backend. */
  constructor(readonly name: string, readonly options: { prefix?: boolean; replies?: number } = {}) {
    this.socket = dgram.createSocket(name.includes(':') ? 'udp6' : 'udp4')
    this.socket.on('message', (msg, rinfo) => {
      this.received++
      this.peers.add(rinfo.port)
      const reply = this.options.prefix === false ? msg : Buffer.concat([Buffer.from(`${this.name}:`), msg])
      for (let i = 0; i < (this.options.replies ?? 1); i++) this.socket.send(reply, rinfo.port, rinfo.address)
    })
    this.socket.on('error', () => {})
  }

  start(host = '127.0.0.1', port = 0): Promise<this> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject)
      this.socket.bind(port, host, () => {
        this.socket.removeListener('error', reject)
        const a = this.socket.address()
        this.port = a.port
        this.address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
        resolve(this)
      })
    })
  }


  stop(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.#closed = true
    return new Promise((resolve) => this.socket.close(() => resolve()))
  }
}

/** A client socket bound to `source` (any 127.x.y.z works on Linux loopback). */
export class UdpClient {
  readonly socket: Socket
  readonly replies: Buffer[] = []
  #waiters: Array<(b: Buffer) => void> = []
  #closed = false
  constructor(family: 4 | 6 = 4) {
    this.socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4')
    this.socket.on('message', (msg) => {
      const w = this.#waiters.shift()
      if (w) w(msg)
      else this.replies.push(msg)
    })
    this.socket.on('error', () => {})
  }

  static async bound(source = '127.0.0.1', family: 4 | 6 = 4): Promise<UdpClient> {
    const c = new UdpClient(family)
    await new Promise<void>((resolve, reject) => {
      c.socket.once('error', reject)
      c.socket.bind(0, source, () => {
        c.socket.removeListener('error', reject)
        resolve()
      })
    })
    return c
  }

  get port(): number {
    return this.socket.address().port
  }

  send(data: string | Buffer, port: number, host = '127.0.0.1'): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(data, port, host, (err) => (err ? reject(err) : resolve())))
  }

  /** The next reply (queued ones first), or a rejection after `timeoutMs`. */
  next(timeoutMs = 2000): Promise<Buffer> {
    const queued = this.replies.shift()
    if (queued) return Promise.resolve(queued)
    let waiter: (b: Buffer) => void = () => {}
    const p = new Promise<Buffer>((resolve) => {
      waiter = resolve
      this.#waiters.push(resolve)
    })
    return within(timeoutMs, 'a UDP reply', p).catch((err: unknown) => {
      this.#waiters = this.#waiters.filter((w) => w !== waiter)
      throw err
    })
  }

  /** Sends and waits for one reply. */
  async ask(data: string | Buffer, port: number, host = '127.0.0.1', timeoutMs = 2000): Promise<Buffer> {
    await this.send(data, port, host)
    return this.next(timeoutMs)
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.#closed = true
    return new Promise((resolve) => this.socket.close(() => resolve()))
  }
}
