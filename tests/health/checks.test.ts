import t from 'tap'
import { checkOnce, quoteBytes, realClock, resolveCheckOptions, type CheckOptions, type CheckResult } from '../../lib/health/index.js'
import { judgeExpect } from '../../lib/health/send-expect-check.js'
import { judgeHttp } from '../../lib/health/http-check.js'
import { closedPort, collect, TestServer } from './helpers.js'

const SSL_REQUEST = Buffer.from('0000000804d2162f', 'hex')
// A PROXY v2 LOCAL header: signature, version 2 / command LOCAL, family UNSPEC, length 0.
const PROXY_V2_LOCAL = Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([0x20, 0x00, 0x00, 0x00])])

function check(port: number, options: CheckOptions): Promise<CheckResult> {
  return checkOnce({ id: 1, name: `127.0.0.1:${port}`, host: '127.0.0.1', port }, resolveCheckOptions(options), realClock)
}

/** Runs `fn` against a fresh server and closes it afterwards. */
async function withServer<T>(onConnection: ConstructorParameters<typeof TestServer>[0], fn: (port: number, server: TestServer) => Promise<T>): Promise<T> {
  const server = new TestServer(onConnection)
  const port = await server.listen()
  try {
    return await fn(port, server)
  } finally {
    await server.close()
  }
}

t.test('tcp: a connect passes; the check closes without sending anything', async (t) => {
  let received: Promise<Buffer> | undefined
  await withServer(
    (socket) => {
      received = collect(socket)
    },
    async (port) => {
      const r = await check(port, { type: 'tcp', timeoutMs: 1000 })
      t.equal(r.ok, true)
      t.equal(r.error, undefined)
      t.ok(r.durationMs >= 0 && r.durationMs < 1000)
      t.equal((await received)?.length, 0, 'no bytes sent')
    },
  )
})

t.test('tcp: a refused connect fails with ECONNREFUSED', async (t) => {
  const r = await check(await closedPort(), { type: 'tcp', timeoutMs: 1000 })
  t.equal(r.ok, false)
  t.equal(r.error, 'ECONNREFUSED')
})

t.test('tcp with sendProxyLocal: the backend receives exactly the PROXY LOCAL header', async (t) => {
  let received: Promise<Buffer> | undefined
  await withServer(
    (socket) => {
      received = collect(socket)
    },
    async (port) => {
      const r = await check(port, { type: 'tcp', sendProxyLocal: PROXY_V2_LOCAL })
      t.equal(r.ok, true)
      t.same(await received, PROXY_V2_LOCAL)
    },
  )
})

/** A server answering the PostgreSQL SSLRequest with `answer` (the real one says 'S' or 'N'). */
function sslRequestServer(answer: Buffer | null) {
  return (socket: import('node:net').Socket) => {
    let got = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length >= 8) {
        if (!got.subarray(0, 8).equals(SSL_REQUEST)) socket.destroy()
        else if (answer) socket.write(answer)
        else socket.end()
      }
    })
  }
}

const pgCheck: CheckOptions = { type: 'send-expect', send: SSL_REQUEST, expect: [Buffer.from('S'), Buffer.from('N')], timeoutMs: 1000 }

t.test("send-expect: PostgreSQL SSLRequest answered 'N' passes", async (t) => {
  await withServer(sslRequestServer(Buffer.from('N')), async (port) => {
    const r = await check(port, pgCheck)
    t.same(r.ok, true, JSON.stringify(r))
  })
})

t.test('send-expect: a wrong answer fails with a quoted mismatch', async (t) => {
  await withServer(sslRequestServer(Buffer.from('E\x00\x00\x00\x10SFATAL')), async (port) => {
    const r = await check(port, pgCheck)
    t.equal(r.ok, false)
    t.equal(r.error, 'expect mismatch: got "E\\x00\\x00\\x00\\x10SFATAL"')
  })
})

t.test('send-expect: EOF before any reply fails clearly', async (t) => {
  await withServer(sslRequestServer(null), async (port) => {
    const r = await check(port, pgCheck)
    t.equal(r.ok, false)
    t.equal(r.error, 'connection closed before reply')
  })
})

t.test('send-expect: a silent backend fails with reply timeout', async (t) => {
  await withServer(
    () => {},
    async (port) => {
      const started = Date.now()
      const r = await check(port, { ...pgCheck, timeoutMs: 50 })
      t.equal(r.ok, false)
      t.equal(r.error, 'reply timeout')
      t.ok(Date.now() - started < 1000, 'bounded by timeoutMs')
    },
  )
})

t.test('send-expect: Redis PING → +PONG, reply split over several packets', async (t) => {
  await withServer(
    (socket) => {
      socket.once('data', () => {
        socket.write('+PO')
        setTimeout(() => socket.write('NG\r\n'), 10)
      })
    },
    async (port) => {
      const r = await check(port, { type: 'send-expect', send: Buffer.from('PING\r\n'), expect: Buffer.from('+PONG') })
      t.equal(r.ok, true, JSON.stringify(r))
    },
  )
})

t.test("send-expect 'contains' finds the bytes anywhere in the reply; sendProxyLocal goes first", async (t) => {
  let received: Buffer | undefined
  await withServer(
    (socket) => {
      socket.on('data', (c: Buffer) => {
        received = received ? Buffer.concat([received, c]) : c
        if (received.length >= PROXY_V2_LOCAL.length + 6) socket.write('$11\r\nrole:master\r\n')
      })
    },
    async (port) => {
      const r = await check(port, {
        type: 'send-expect',
        send: Buffer.from('ROLE\r\n'),
        expect: Buffer.from('role:master'),
        expectMatch: 'contains',
        sendProxyLocal: PROXY_V2_LOCAL,
      })
      t.equal(r.ok, true, JSON.stringify(r))
      t.same(received, Buffer.concat([PROXY_V2_LOCAL, Buffer.from('ROLE\r\n')]))
    },
  )
})

/** Answers like Patroni's REST API: 200 on /primary for the leader, 503 on /replica. */
function patroniServer(requests: string[]) {
  return (socket: import('node:net').Socket) => {
    let head = ''
    socket.on('data', (c: Buffer) => {
      head += c.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      requests.push(head)
      const path = head.split(' ')[1]
      const status = path === '/primary' ? '200 OK' : path === '/replica' ? '503 Service Unavailable' : '404 Not Found'
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`)
    })
  }
}

t.test('http: Patroni-style /primary 200 passes, /replica 503 fails', async (t) => {
  const requests: string[] = []
  await withServer(patroniServer(requests), async (port) => {
    const primary = await check(port, { type: 'http', httpPath: '/primary' })
    t.equal(primary.ok, true, JSON.stringify(primary))
    const replica = await check(port, { type: 'http', httpPath: '/replica' })
    t.equal(replica.ok, false)
    t.equal(replica.error, 'http status 503')
    const accepting = await check(port, { type: 'http', httpPath: '/replica', httpStatus: '200,503' })
    t.equal(accepting.ok, true, 'httpStatus lists accepted codes')
  })
  const first = requests[0] ?? ''
  t.match(first, /^GET \/primary HTTP\/1\.1\r\n/)
  t.match(first, /\r\nHost: 127\.0\.0\.1:\d+\r\n/)
  t.match(first, /\r\nConnection: close\r\n/)
})

t.test('http: a non-HTTP reply fails with what came back', async (t) => {
  await withServer(
    (socket) => {
      socket.once('data', () => socket.end('SSH-2.0-OpenSSH_9.6\r\n'))
    },
    async (port) => {
      const r = await check(port, { type: 'http' })
      t.equal(r.ok, false)
      t.equal(r.error, 'http bad response: got "SSH-2.0-OpenSSH_9.6"')
    },
  )
})

t.test('checks probe options.port instead of the target port', async (t) => {
  await withServer(patroniServer([]), async (port) => {
    const r = await checkOnce(
      { id: 1, name: 'db', host: '127.0.0.1', port: await closedPort() },
      resolveCheckOptions({ type: 'http', httpPath: '/primary', port }),
      realClock,
    )
    t.equal(r.ok, true, JSON.stringify(r))
  })
})

t.test('judgeExpect decides as early as the bytes allow', async (t) => {
  const o = { expect: [Buffer.from('S'), Buffer.from('N')], expectMatch: 'prefix' as const }
  const redis = { expect: [Buffer.from('+PONG')], expectMatch: 'prefix' as const }
  const table: Array<[string, Parameters<typeof judgeExpect>[1], string, boolean, ReturnType<typeof judgeExpect>]> = [
    ['S passes', o, 'S', false, { ok: true }],
    ['N passes', o, 'N', false, { ok: true }],
    ['nothing yet: wait', o, '', false, null],
    ['nothing at EOF', o, '', true, { ok: false, error: 'connection closed before reply' }],
    ['a partial prefix waits', redis, '+PO', false, null],
    ['a partial prefix at EOF fails', redis, '+PO', true, { ok: false, error: 'expect mismatch: got "+PO"' }],
    ['a wrong first byte fails at once', redis, '-ERR', false, { ok: false, error: 'expect mismatch: got "-ERR"' }],
    ['contains: waits for more', { expect: [Buffer.from('master')], expectMatch: 'contains' }, 'role:sla', false, null],
    ['contains: EOF without it fails', { expect: [Buffer.from('master')], expectMatch: 'contains' }, 'role:slave', true, { ok: false, error: 'expect mismatch: got "role:slave"' }],
  ]
  for (const [name, options, reply, eof, want] of table) t.same(judgeExpect(Buffer.from(reply), options, eof), want, name)
})

t.test('judgeHttp reads only the status line', async (t) => {
  const ok2xx = { httpStatusOk: (s: number) => s >= 200 && s < 300 }
  t.same(judgeHttp(Buffer.from('HTTP/1.1 200 OK\r\n'), ok2xx, false), { ok: true })
  t.same(judgeHttp(Buffer.from('HTTP/1.0 204\r\n'), ok2xx, false), { ok: true })
  t.same(judgeHttp(Buffer.from('HTTP/1.1 503 Service Unavailable\r\n'), ok2xx, false), { ok: false, error: 'http status 503' })
  t.same(judgeHttp(Buffer.from('HTTP/1.1 20'), ok2xx, false), null)
  t.same(judgeHttp(Buffer.from(''), ok2xx, true), { ok: false, error: 'connection closed before reply' })
})

t.test('quoteBytes escapes and truncates', async (t) => {
  t.equal(quoteBytes(Buffer.from('+PONG\r\n')), '"+PONG\\r\\n"')
  t.equal(quoteBytes(Buffer.from([0, 0x22, 0x5c, 0xff])), '"\\x00\\"\\\\\\xff"')
  t.equal(quoteBytes(Buffer.alloc(40, 'a')), `"${'a'.repeat(32)}" (+8 bytes)`)
})

t.test('httpStatus parsing', async (t) => {
  const ok = resolveCheckOptions({ type: 'http', httpStatus: '2xx, 301' }).httpStatusOk
  t.same([200, 299, 301, 302, 503].map(ok), [true, true, true, false, false])
  t.same([200, 204, 503].map(resolveCheckOptions({ type: 'http' }).httpStatusOk), [true, true, false], "default '2xx'")
})

t.test('invalid options are ConfigErrors naming the key and value', async (t) => {
  const table: Array<[CheckOptions, string]> = [
    [{ type: 'tcp', rise: 0 }, 'check.rise 0: must be a positive integer'],
    [{ type: 'tcp', fall: 1.5 }, 'check.fall 1.5: must be a positive integer'],
    [{ type: 'tcp', intervalMs: -1 }, 'check.intervalMs -1: must be a positive number of milliseconds'],
    [{ type: 'tcp', port: 70000 }, 'check.port 70000: must be an integer from 1 to 65535'],
    [{ type: 'tcp', jitterRatio: 0.9 }, 'check.jitterRatio 0.9: must be from 0 to 0.5'],
    [{ type: 'send-expect', send: Buffer.from('PING\r\n') }, 'check.expect: a send-expect check needs at least one expected reply'],
    [{ type: 'http', httpPath: '/a b' }, 'check.httpPath "/a b": must start with "/" and hold only visible ASCII'],
    [{ type: 'http', httpStatus: '2x' }, 'check.httpStatus "2x": must be a status like 200, 2xx or 200,204'],
    [{ type: 'udp' }, 'check.send: a udp check needs bytes to send'],
    [{ type: 'send-expect', expect: [Buffer.alloc(0)] }, 'check.expect "": an expected reply must not be empty'],
    [{ type: 'tcp', flap: { maxTransitions: 0, windowMs: 1000, holdMs: 1000 } }, 'check.flap.maxTransitions 0: must be a positive integer'],
    [{ type: 'ping' as 'tcp' }, 'check.type "ping": must be one of tcp, send-expect, http, udp, none'],
  ]
  for (const [options, message] of table) {
    t.throws(() => resolveCheckOptions(options), { name: 'ConfigError', code: 'L4LB_ERR_CONFIG', message }, message)
  }
})

t.test('a target that cannot even be dialled is a failed check, not a throw', async (t) => {
  const r = await checkOnce({ id: 1, name: 'bad', host: '127.0.0.1', port: 70000 }, resolveCheckOptions({ type: 'tcp' }), realClock)
  t.equal(r.ok, false)
  t.equal(r.error, 'ERR_SOCKET_BAD_PORT')
})
