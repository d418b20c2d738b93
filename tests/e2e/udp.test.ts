import t, { type Test } from 'tap'
import dgram from 'node:dgram'
import net from 'node:net'
import { readdir } from 'node:fs/promises'
import { EchoBackend, closeServer, eventually, listen, spawnL4lb, whoAnswers, within, type L4lbProcess, type LogLine } from '../helpers/index.js'
import { UdpClient, UdpEchoBackend } from '../helpers/udp.js'

async function backends(t: Test, names: string[], host = '127.0.0.1', options: ConstructorParameters<typeof UdpEchoBackend>[1] = {}): Promise<UdpEchoBackend[]> {
  const list = await Promise.all(names.map((n) => new UdpEchoBackend(n, options).start(host)))
  t.teardown(() => Promise.all(list.map((b) => b.stop())))
  return list
}

async function l4lb(t: Test, args: string[], listenAt = '127.0.0.1:0'): Promise<L4lbProcess> {
  const p = await spawnL4lb(['-l', listenAt, '--protocol', 'udp', ...args])
  t.teardown(() => p.stop())
  await p.waitForLog('udp listening', (l) => l.msg === 'listening' && l.proto === 'udp')
  return p
}

async function client(t: Test, source = '127.0.0.1', family: 4 | 6 = 4): Promise<UdpClient> {
  const c = await UdpClient.bound(source, family)
  t.teardown(() => c.close())
  return c
}

// The i-th distinct client source in 127.0.0.0/8 (avoids 127.0.0.x, used by listeners).
function source(i: number): string {
  return `127.${1 + (i >> 16)}.${(i >> 8) & 0xff}.${(i & 0xff) || 1}`
}

const closed = (lb: L4lbProcess): LogLine[] => lb.logs.filter((l) => l.msg === 'session closed')

async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length
}

t.test('1,000 client ports from 200 sources: a source sticks to one backend across its ports, every backend used', async (t) => {
  const bs = await backends(t, ['a', 'b', 'c'])
  const lb = await l4lb(t, ['--check', 'none', ...bs.flatMap((b) => ['-b', b.address])])
  const port = lb.udpPorts[0]!
  const bySource = new Map<string, Set<string>>()
  const counts: Record<string, number> = {}
  // 200 sources × 5 ports, 50 sockets at a time; each socket is its own client port.
  for (let batch = 0; batch < 20; batch++) {
    const clients: Array<{ src: string; c: UdpClient }> = []
    for (let j = 0; j < 50; j++) {
      const i = batch * 50 + j
      const src = source(Math.floor(i / 5) * 13 + 7)
      clients.push({ src, c: await UdpClient.bound(src) })
    }
    try {
      await Promise.all(clients.map(async ({ src, c }) => {
        const reply = (await c.ask(`hello from ${src}:${c.port}`, port)).toString()
        const name = reply.slice(0, reply.indexOf(':'))
        if (reply !== `${name}:hello from ${src}:${c.port}`) throw new Error(`wrong reply ${reply}`)
        const set = bySource.get(src) ?? new Set()
        set.add(name)
        bySource.set(src, set)
        counts[name] = (counts[name] ?? 0) + 1
      }))
    } finally {
      await Promise.all(clients.map(({ c }) => c.close()))
    }
  }
  t.equal(bySource.size, 200)
  const split = [...bySource].filter(([, s]) => s.size !== 1)
  t.same(split, [], 'each source IP always answered by one backend (src-ip hash key)')
  t.same(Object.keys(counts).sort(), ['a', 'b', 'c'], `every backend used: ${JSON.stringify(counts)}`)
  for (const [name, n] of Object.entries(counts)) t.ok(n >= 150 && n <= 550, `backend ${name} served ${n}/1000 client ports`)
})

t.test('200 concurrent clients with unique payloads: every reply reaches the client that asked', async (t) => {
  const bs = await backends(t, ['a', 'b'])
  const lb = await l4lb(t, ['--check', 'none', '--hash-key', 'src-ip-port', ...bs.flatMap((b) => ['-b', b.address])])
  const port = lb.udpPorts[0]!
  const clients = await Promise.all(Array.from({ length: 200 }, () => UdpClient.bound('127.0.0.1')))
  t.teardown(() => Promise.all(clients.map((c) => c.close())))
  const wrong: string[] = []
  await Promise.all(clients.map(async (c, i) => {
    for (let k = 0; k < 5; k++) {
      const payload = `client-${i}-msg-${k}-${c.port}`
      const reply = (await c.ask(payload, port)).toString()
      if (!reply.endsWith(`:${payload}`)) wrong.push(`${payload} got ${reply}`)
    }
  }))
  t.same(wrong, [], 'no cross-talk')
  t.ok(bs.every((b) => b.received > 0), 'both backends used with src-ip-port')
})

t.test('an idle session ends (idle-timeout), frees its socket, and a later datagram opens a new one', async (t) => {
  const [b] = await backends(t, ['a'])
  const lb = await l4lb(t, ['--check', 'none', '-b', b!.address, '--udp-idle-timeout', '300ms'])
  const port = lb.udpPorts[0]!
  const baseline = await fdCount(lb.proc.pid!)
  const clients = await Promise.all(Array.from({ length: 20 }, () => client(t)))
  const peersAtStart = b!.peers.size
  for (const c of clients) t.equal((await c.ask('ping', port)).toString(), 'a:ping')
  // Counted at the backend, not as open fds: on a loaded box the first sessions may already have
  // idled out (300 ms) by the time the last one is asked, and their sockets closed.
  t.equal(b!.peers.size, peersAtStart + 20, 'one upstream socket (source port) per session')
  await eventually('20 idle-timeout lines', () => closed(lb).filter((l) => l.reason === 'idle-timeout').length === 20, 10_000)
  const line = closed(lb)[0]!
  t.match(line, { backend: b!.address, datagramsIn: 1, datagramsOut: 1, bytesIn: 4, bytesOut: 6, reason: 'idle-timeout' })
  // Not before the idle timeout; the upper bound only says it did end (a loaded box is slow).
  t.ok((line.durationMs as number) >= 300 && (line.durationMs as number) < 10_000, `durationMs ${line.durationMs}`)
  await eventually('upstream sockets closed', async () => (await fdCount(lb.proc.pid!)) <= baseline, 2000)
  const peersBefore = b!.peers.size
  t.equal((await clients[0]!.ask('again', port)).toString(), 'a:again')
  t.equal(b!.peers.size, peersBefore + 1, 'a new session has a new upstream socket')
  await eventually('the new session ends too', () => closed(lb).length === 21, 3000)
})

t.test('--udp-responses 1: a DNS-like exchange ends the session right after the reply', async (t) => {
  const [b] = await backends(t, ['dns'])
  const lb = await l4lb(t, ['--check', 'none', '-b', b!.address, '--udp-responses', '1', '--udp-idle-timeout', '30s'])
  const port = lb.udpPorts[0]!
  const c = await client(t)
  const query = Buffer.from('0001010000010000000000000377777706676f6f676c6503636f6d0000010001', 'hex')
  const reply = await c.ask(query, port)
  t.same(reply.subarray(4), query)
  const line = await lb.waitForLog('session closed', (l) => l.msg === 'session closed', 10_000)
  t.match(line, { reason: 'responses', datagramsIn: 1, datagramsOut: 1 })
  // The reason says why it ended; the duration that it was not the 30 s idle timeout.
  t.ok((line.durationMs as number) < 15_000, `closed in ${line.durationMs}ms, not after the 30 s idle timeout`)
  // Each new query is its own session.
  await c.ask(query, port)
  await eventually('second session closed', () => closed(lb).length === 2, 10_000)
})

t.test('a backend that stops answering (ICMP port unreachable) loses its sessions to the others', async (t) => {
  const bs = await backends(t, ['a', 'b', 'c'])
  const lb = await l4lb(t, ['--check', 'none', ...bs.flatMap((b) => ['-b', b.address])])
  const port = lb.udpPorts[0]!
  const c = await client(t, '127.44.0.1')
  const first = (await c.ask('one', port)).toString().split(':')[0]!
  const victim = bs.find((b) => b.name === first)!
  await victim.stop()
  // The next datagram meets ICMP port unreachable; the client's retry goes to another backend.
  let answer = ''
  for (let i = 0; i < 10 && answer === ''; i++) {
    try {
      answer = (await c.ask(`retry-${i}`, port, '127.0.0.1', 300)).toString()
    } catch {
      // lost, as UDP may: retry
    }
  }
  t.not(answer, '', 'a retry was answered')
  t.not(answer.split(':')[0], first, `moved away from ${first} to ${answer}`)
  const line = await lb.waitForLog('backend-error', (l) => l.msg === 'session closed' && l.reason === 'backend-error')
  t.equal(line.backend, victim.address)
})

t.test('a backend marked down by its check moves sessions on their next datagram; --udp-keep-sessions keeps them', async (t) => {
  for (const keep of [false, true]) {
    await t.test(keep ? 'keep' : 'move', async (t) => {
      const bs = await backends(t, ['a', 'b'])
      const checks = await Promise.all(bs.map(async () => {
        const s = net.createServer((sock) => sock.destroy())
        return { server: s, port: await listen(s) }
      }))
      t.teardown(() => Promise.all(checks.map((c) => closeServer(c.server))))
      const lb = await l4lb(t, [
        '--check', 'tcp', '--check-interval', '100ms', '--check-timeout', '200ms', '--rise', '1', '--fall', '1',
        ...bs.flatMap((b, i) => ['-b', `${b.address},check-port=${checks[i]!.port}`]),
        ...(keep ? ['--udp-keep-sessions'] : []),
      ])
      const port = lb.udpPorts[0]!
      const c = await client(t, '127.45.0.1')
      const first = await eventually('an answer', async () => (await c.ask('one', port).catch(() => Buffer.alloc(0))).toString(), 3000)
      const name = first.split(':')[0]!
      const i = bs.findIndex((b) => b.name === name)
      await closeServer(checks[i]!.server)
      await lb.waitForLog('backend down', (l) => l.msg === 'backend state changed' && l.to === 'down', 3000)
      const next = (await c.ask('two', port)).toString()
      if (keep) {
        t.equal(next, `${name}:two`, 'the session stays on its backend until idle')
        t.equal(closed(lb).length, 0)
      } else {
        t.not(next.split(':')[0], name, `moved to ${next}`)
        const line = await lb.waitForLog('backend-down', (l) => l.msg === 'session closed' && l.reason === 'backend-down')
        t.equal(line.backend, bs[i]!.address)
      }
    })
  }
})

t.test('a 65507-byte datagram crosses unchanged over IPv4, and the largest IPv6 one over ::1', async (t) => {
  const [v4] = await backends(t, ['big'], '127.0.0.1', { prefix: false })
  const lb4 = await l4lb(t, ['--check', 'none', '-b', v4!.address])
  const c4 = await client(t)
  const big = Buffer.alloc(65_507)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff
  const back = await c4.ask(big, lb4.udpPorts[0]!)
  t.equal(back.length, 65_507)
  t.ok(back.equals(big), 'identical bytes back over IPv4')

  const [v6] = await backends(t, ['big:6'], '::1', { prefix: false })
  const lb6 = await l4lb(t, ['--check', 'none', '-b', v6!.address], '[::1]:0')
  const c6 = await client(t, '::1', 6)
  // IPv6 carries up to 65535 − 8 bytes of UDP payload (the 40-byte header is not counted).
  const big6 = Buffer.alloc(65_527, 0x5a)
  const back6 = await c6.ask(big6, lb6.udpPorts[0]!, '::1')
  t.equal(back6.length, 65_527)
  t.ok(back6.equals(big6), 'identical bytes back over IPv6')
})

t.test('one UDP service on an IPv4 and an IPv6 address: each client is answered from the address it sent to', async (t) => {
  const [b] = await backends(t, ['dual'])
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-l', '[::1]:0', '--protocol', 'udp', '--check', 'none', '-b', b!.address])
  t.teardown(() => lb.stop())
  await eventually('both UDP listeners', () => lb.udpPorts.length === 2)
  const line = lb.logs.find((l) => l.msg === 'listening' && l.proto === 'udp')
  const [at4, at6] = (line?.listen ?? []) as string[]
  t.match(at4, /^127\.0\.0\.1:\d+$/, 'an IPv4 listener')
  t.match(at6, /^\[::1\]:\d+$/, 'an IPv6 listener')
  const [port4, port6] = lb.udpPorts as [number, number]
  for (const [family, host, listenPort] of [[4, '127.0.0.1', port4], [6, '::1', port6]] as const) {
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4')
    t.teardown(() => socket.close())
    await new Promise<void>((resolve) => socket.bind(0, host, resolve))
    const reply = new Promise<{ msg: string; from: dgram.RemoteInfo }>((resolve) => socket.once('message', (msg, from) => resolve({ msg: msg.toString(), from })))
    socket.send(`hi over IPv${family}`, listenPort, host)
    const { msg, from } = await within(2000, `a reply over IPv${family}`, reply)
    t.equal(msg, `dual:hi over IPv${family}`)
    t.same({ address: from.address, port: from.port }, { address: host, port: listenPort }, `IPv${family}: the reply comes from the address and port the client sent to`)
  }
})

t.test('--protocol tcp,udp serves TCP and UDP clients on the one port', async (t) => {
  const tcpBackend = await new EchoBackend('tcp-a').start()
  t.teardown(() => tcpBackend.stop())
  const udpBackend = await new UdpEchoBackend('udp-a').start('127.0.0.1', tcpBackend.port)
  t.teardown(() => udpBackend.stop())
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '--protocol', 'tcp,udp', '--check', 'none', '-b', tcpBackend.address])
  t.teardown(() => lb.stop())
  await lb.waitForLog('udp listening', (l) => l.msg === 'listening' && l.proto === 'udp')
  t.equal(lb.udpPorts[0], lb.ports[0], 'one port number for both')
  t.equal(await whoAnswers(lb.ports[0]!), 'tcp-a')
  const c = await client(t)
  t.equal((await c.ask('dns?', lb.udpPorts[0]!)).toString(), 'udp-a:dns?')
})

t.test('--udp-max-sessions: new flows beyond the limit get no reply and are counted', async (t) => {
  const [b] = await backends(t, ['a'])
  const lb = await l4lb(t, ['--check', 'none', '-b', b!.address, '--udp-max-sessions', '5'])
  const port = lb.udpPorts[0]!
  const clients = await Promise.all(Array.from({ length: 8 }, () => client(t)))
  for (const c of clients.slice(0, 5)) t.equal((await c.ask('in', port)).toString(), 'a:in')
  for (const c of clients.slice(5)) await t.rejects(c.ask('out', port, '127.0.0.1', 300), /timed out/)
  // Existing sessions still work.
  t.equal((await clients[0]!.ask('still', port)).toString(), 'a:still')
  await lb.stop()
  const stats = lb.logs.find((l) => l.msg === 'udp service stopped')
  t.match(stats, { droppedMaxSessions: 3, sessionsCreated: 5 })
  t.equal(closed(lb).filter((l) => l.reason === 'shutdown').length, 5, 'stop ends sessions with reason shutdown')
})

t.test('garbage and empty datagrams never crash the balancer', async (t) => {
  const [b] = await backends(t, ['a'])
  const lb = await l4lb(t, ['--check', 'none', '-b', b!.address])
  const port = lb.udpPorts[0]!
  const c = await client(t)
  await c.send(Buffer.alloc(0), port)
  for (let i = 0; i < 50; i++) await c.send(Buffer.from([i, 0xff, 0, 0x0d, 0x0a]), port)
  await eventually('the echoes of the garbage', () => c.replies.length === 51, 2000)
  c.replies.length = 0
  t.equal((await c.ask('ok', port)).toString(), 'a:ok')
  t.equal(lb.proc.exitCode, null)
})

t.test('--check udp: a backend whose UDP port stops answering is marked down and gets no new sessions', async (t) => {
  const bs = await backends(t, ['a', 'b'])
  const lb = await l4lb(t, [
    '--check', 'udp', '--check-send', 'ping', '--check-expect', 'a:ping', '--check-expect', 'b:ping',
    '--check-interval', '100ms', '--check-timeout', '300ms', '--rise', '1', '--fall', '1',
    ...bs.flatMap((b) => ['-b', b.address]),
  ])
  await eventually('both up', () => lb.logs.filter((l) => l.msg === 'backend state changed' && l.to === 'up').length === 2, 3000)
  await bs[0]!.stop()
  const down = await lb.waitForLog('a down', (l) => l.msg === 'backend state changed' && l.to === 'down', 3000)
  t.equal(down.backend, bs[0]!.address)
  t.match(down.lastError ?? down.reason, /ECONNREFUSED|timeout|refused/i, `reason ${down.reason} ${down.lastError}`)
  for (let i = 0; i < 10; i++) {
    const c = await UdpClient.bound(source(i * 31 + 5))
    try {
      t.equal((await c.ask('x', lb.udpPorts[0]!)).toString(), 'b:x')
    } finally {
      await c.close()
    }
  }
})

t.test('--proxy-protocol v2 over UDP: every datagram carries a DGRAM header with the real client; --proxy-udp-first-only sends it once', async (t) => {
  const { parseProxyHeader } = await import('../../lib/proxy-protocol/index.js')
  const dgram = await import('node:dgram')
  for (const firstOnly of [false, true]) {
    // The backend reports what each datagram started with: the header's source, or "no header".
    const backend = dgram.createSocket('udp4')
    backend.on('message', (msg, rinfo) => {
      let text: string
      try {
        const parsed = parseProxyHeader(msg)
        text = parsed.state === 'done' ? `${parsed.header.transport} ${parsed.header.source?.address}:${parsed.header.source?.port} ${parsed.rest.toString()}` : 'partial'
      } catch {
        text = `no header ${msg.toString()}`
      }
      backend.send(text, rinfo.port, rinfo.address)
    })
    await new Promise<void>((resolve) => backend.bind(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>((resolve) => backend.close(() => resolve())))
    const lb = await l4lb(t, ['-b', `127.0.0.1:${backend.address().port}`, '--check', 'none', '--proxy-protocol', 'v2', ...(firstOnly ? ['--proxy-udp-first-only'] : [])])
    const c = await client(t, '127.8.0.5')
    const replies: string[] = []
    for (const word of ['one', 'two', 'three']) replies.push((await c.ask(word, lb.udpPorts[0]!)).toString())
    const from = `127.8.0.5:${c.port}`
    if (firstOnly) t.same(replies, [`dgram ${from} one`, 'no header two', 'no header three'], 'first datagram only')
    else t.same(replies, [`dgram ${from} one`, `dgram ${from} two`, `dgram ${from} three`], 'a header on every datagram')
  }
})

t.test('the admin API lists the session table of a UDP service (GET /sessions/{service})', async (t) => {
  const [a] = await backends(t, ['a'])
  const lb = await l4lb(t, ['-b', a!.address, '--check', 'none', '--name', 'game', '--admin', '127.0.0.1:0'])
  const adminLine = await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const adminPort = Number(String(adminLine.admin).split(':').pop())
  const clients = await Promise.all([1, 2, 3].map((i) => client(t, `127.9.1.${i}`)))
  for (const c of clients) t.equal((await c.ask('hi', lb.udpPorts[0]!)).toString(), 'a:hi')
  const http = await import('node:http')
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: adminPort, path: '/sessions/game' }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve(text))
    }).on('error', reject)
  })
  const doc = JSON.parse(body) as { total: number; sessions: Array<{ client: string; backend: string; datagramsIn: number; datagramsOut: number }> }
  t.equal(doc.total, 3)
  t.same(doc.sessions.map((s) => s.client.split(':')[0]).sort(), ['127.9.1.1', '127.9.1.2', '127.9.1.3'])
  for (const s of doc.sessions) t.same([s.backend, s.datagramsIn, s.datagramsOut], [a!.address, 1, 1])
})
