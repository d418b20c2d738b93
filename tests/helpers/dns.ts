/**
 * A tiny authoritative DNS server on loopback for tests: answers A, AAAA and SRV questions from
 * a table the test can change at any time (RFC 1035 wire format, UDP only).
 */
import dgram from 'node:dgram'
import net from 'node:net'

export interface SrvAnswer {
  priority: number
  weight: number
  port: number
  target: string
}

export class TestDnsServer {
  readonly a = new Map<string, string[]>()
  readonly srv = new Map<string, SrvAnswer[]>()
  queries = 0
  readonly #socket = dgram.createSocket('udp4')
  port = 0

  async start(): Promise<this> {
    this.#socket.on('message', (msg, rinfo) => {
      try {
        const reply = this.#answer(msg)
        if (reply) this.#socket.send(reply, rinfo.port, rinfo.address)
      } catch {
        // A malformed query gets no answer.
      }
    })
    await new Promise<void>((resolve) => this.#socket.bind(0, '127.0.0.1', resolve))
    this.port = this.#socket.address().port
    return this
  }

  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()))
  }

  #answer(query: Buffer): Buffer | undefined {
    this.queries++
    let offset = 12
    const labels: string[] = []
    while (query[offset]! !== 0) {
      const len = query[offset]!
      labels.push(query.subarray(offset + 1, offset + 1 + len).toString('latin1'))
      offset += len + 1
    }
    offset++
    const qtype = query.readUInt16BE(offset)
    const question = query.subarray(12, offset + 4)
    const name = labels.join('.').toLowerCase()
    const answers: Buffer[] = []
    if (qtype === 1 || qtype === 28) {
      for (const ip of this.a.get(name) ?? []) {
        const family = net.isIP(ip)
        if ((qtype === 1 && family !== 4) || (qtype === 28 && family !== 6)) continue
        const rdata = family === 4 ? Buffer.from(ip.split('.').map(Number)) : ipv6Bytes(ip)
        answers.push(record(qtype, rdata))
      }
    } else if (qtype === 33) {
      for (const r of this.srv.get(name) ?? []) {
        const head = Buffer.alloc(6)
        head.writeUInt16BE(r.priority, 0)
        head.writeUInt16BE(r.weight, 2)
        head.writeUInt16BE(r.port, 4)
        answers.push(record(33, Buffer.concat([head, encodeName(r.target)])))
      }
    }
    const header = Buffer.alloc(12)
    query.copy(header, 0, 0, 2)
    header.writeUInt16BE(answers.length > 0 || this.a.has(name) || this.srv.has(name) ? 0x8180 : 0x8183, 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(answers.length, 6)
    return Buffer.concat([header, question, ...answers])
  }
}

function record(type: number, rdata: Buffer): Buffer {
  const head = Buffer.alloc(12)
  head.writeUInt16BE(0xc00c, 0) // pointer to the question's name
  head.writeUInt16BE(type, 2)
  head.writeUInt16BE(1, 4)
  head.writeUInt32BE(1, 6) // TTL 1s: the test changes answers
  head.writeUInt16BE(rdata.length, 10)
  return Buffer.concat([head, rdata])
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.')
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])), Buffer.from([0])])
}

function ipv6Bytes(ip: string): Buffer {
  const [head = '', tail = ''] = ip.split('::')
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}
