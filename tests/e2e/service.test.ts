import t from 'tap'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import path from 'node:path'
import http from 'node:http'
import type { Socket } from 'node:net'
import { BIN, ROOT, EchoBackend, connect, eventually, readLine, runL4lb, spawnL4lb, whoAnswers, within, tempDir } from '../helpers/index.js'

function get(port: number, urlPath: string, token?: string): Promise<{ status: number; body: string }> {
  return within(5000, `GET ${urlPath}`, new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  }))
}

t.test('l4lb check prints every config error as FILE:LINE: key: message', async (t) => {
  const dir = tempDir(t, 'l4lb-test-')
  const file = path.join(dir, 'bad.yaml')
  writeFileSync(file, [
    'services:',
    '  - name: pg',
    '    listen: [":5432"]',
    '    conectTimeout: 5s',
    '    idleTimeout: forever',
    '    backends:',
    '      - db1:99999',
    '  - name: pg2',
    '    listen: [":5432"]',
    '    backends: ["127.0.0.1:5433"]',
    '',
  ].join('\n'))
  const { code, stderr } = await runL4lb(['check', '-c', file])
  t.equal(code, 2)
  t.same(stderr.trim().split('\n'), [
    `${file}:4: services[0].conectTimeout: unknown key (did you mean "connectTimeout"?)`,
    `${file}:5: services[0].idleTimeout: "forever": not a duration: use a number with ms, s, m or h (e.g. "500ms", "5s", "1m30s")`,
    `${file}:7: services[0].backends[0]: "db1:99999": port must be 1-65535`,
    `${file}:9: services[1].listen[0]: "[::]:5432": duplicate listen address (tcp, also in service pg)`,
  ])
  const good = path.join(dir, 'good.yaml')
  writeFileSync(good, 'services:\n  - name: pg\n    listen: [":5432"]\n    backends: ["127.0.0.1:5433"]\n')
  const ok = await runL4lb(['check', '-c', good])
  t.equal(ok.code, 0)
  const [summary, plane, ...rest] = ok.stdout.trim().split('\n')
  t.equal(summary, `${good}: ok (1 service: pg)`)
  t.match(plane, /^ {2}pg: (native|node) plane \(.+\)$/, 'the plane the service would run on, and why')
  t.same(rest, [])
})

t.test('admin API: /status and /metrics after traffic, drain from the CLI, bearer token', async (t) => {
  const dir = tempDir(t, 'l4lb-test-')
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  writeFileSync(path.join(dir, 'token'), 's3cret\n')
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', a.address, '-b', b.address, '--balance', 'round-robin', '--check', 'none',
    '--name', 'web', '--admin', '127.0.0.1:0', '--admin-token-file', path.join(dir, 'token')])
  t.teardown(() => lb.stop())
  const adminLine = await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const adminPort = Number(String(adminLine.admin).split(':').pop())
  for (let i = 0; i < 4; i++) await whoAnswers(lb.ports[0]!)
  await eventually('4 closed connections', () => lb.logs.filter((l) => l.msg === 'connection closed').length === 4)

  t.equal((await get(adminPort, '/status')).status, 401, 'no token: 401')
  const status = JSON.parse((await get(adminPort, '/status', 's3cret')).body)
  t.equal(status.services[0].name, 'web')
  t.same(status.services[0].backends.map((x: { address: string; state: string; connectionsTotal: number }) => [x.address, x.state, x.connectionsTotal]), [[a.address, 'up', 2], [b.address, 'up', 2]])

  const metrics = (await get(adminPort, '/metrics', 's3cret')).body
  t.match(metrics, `l4lb_connections_total{service="web",backend="${a.address}"} 2`)
  t.match(metrics, `l4lb_backend_up{service="web",backend="${b.address}"} 1`)
  t.match(metrics, `l4lb_bytes_total{service="web",backend="${a.address}",direction="out"} 4`)
  t.match(metrics, /# TYPE l4lb_active_connections gauge/)
  t.match(metrics, /process_resident_memory_bytes \d+/)

  // Drain b while a connection to it is open: it finishes, new ones go to a.
  const held: Socket[] = []
  for (let i = 0; i < 2; i++) {
    const s = await connect(lb.ports[0]!)
    held.push(s)
    await readLine(s)
  }
  const tokenFile = path.join(dir, 'token')
  const drain = await runL4lb(['drain', 'web', b.address, '--admin', `127.0.0.1:${adminPort}`, '--admin-token-file', tokenFile])
  t.equal(drain.code, 0, drain.stderr)
  t.equal(drain.stdout.trim(), `web ${b.address}: up → drain (1 active connections)`)
  for (let i = 0; i < 4; i++) t.equal(await whoAnswers(lb.ports[0]!), 'a', 'a drained backend gets no new connections')
  for (const s of held) {
    s.write('still\n')
    t.equal(await readLine(s), 'still', 'connections on the drained backend keep working')
    s.destroy()
  }
  const table = await runL4lb(['status', '--admin', `127.0.0.1:${adminPort}`, '--admin-token-file', tokenFile])
  t.equal(table.code, 0)
  t.match(table.stdout, new RegExp(`${b.address.replace(/\./g, '\\.')}\\s+drain`))
  const enable = await runL4lb(['enable', 'web', b.address, '--admin', `127.0.0.1:${adminPort}`, '--admin-token-file', tokenFile])
  t.equal(enable.code, 0)
  const seen = new Set<string>()
  for (let i = 0; i < 4; i++) seen.add(await whoAnswers(lb.ports[0]!))
  t.same([...seen].sort(), ['a', 'b'], 'enabled again')
})

t.test('the admin endpoint on a unix socket path serves l4lb status', async (t) => {
  const dir = tempDir(t, 'l4lb-test-')
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  const sock = path.join(dir, 'admin.sock')
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', '-b', a.address, '--check', 'none', '--name', 'unix', '--admin', sock])
  t.teardown(() => lb.stop())
  await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const status = await runL4lb(['status', '--admin', sock])
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /^service unix \(tcp\) on 127\.0\.0\.1:\d+/)
  t.match(status.stdout, new RegExp(`${a.address.replace(/\./g, '\\.')}\\s+up`))
  const missing = await runL4lb(['status', '--admin', path.join(dir, 'nope.sock')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^l4lb: cannot reach the admin endpoint at .*nope\.sock: ENOENT/)
})

t.test('SIGHUP reload: 200 streaming connections survive, new weights apply, an invalid file is refused', async (t) => {
  const dir = tempDir(t, 'l4lb-test-')
  const a = await new EchoBackend('a').start()
  const b = await new EchoBackend('b').start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  const file = path.join(dir, 'l4lb.yaml')
  const write = (weightA: number, extra = ''): void =>
    writeFileSync(file, [
      'services:',
      '  - name: app',
      '    listen: ["127.0.0.1:0"]',
      '    balance: round-robin',
      '    health: {type: none}',
      '    backends:',
      `      - {address: "${a.address}", weight: ${weightA}}`,
      `      - ${b.address}`,
      extra,
    ].join('\n'))
  write(1)
  const lb = await spawnL4lb(['-c', file])
  t.teardown(() => lb.stop())
  const port = lb.ports[0]!

  // 200 connections that keep talking through the reload.
  const streams = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const s = await connect(port, '127.0.0.1', `127.7.0.${i + 1}`)
    await readLine(s)
    return s
  }))
  let rounds = 0
  const talk = async (): Promise<void> => {
    await Promise.all(streams.map(async (s, i) => {
      s.write(`ping ${i} ${rounds}\n`)
      const line = await readLine(s)
      if (line !== `ping ${i} ${rounds}`) throw new Error(`stream ${i} got ${line}`)
    }))
    rounds++
  }
  await talk()
  write(3)
  lb.proc.kill('SIGHUP')
  for (let i = 0; i < 5; i++) await talk()
  await lb.waitForLog('reloaded', (l) => l.msg === 'reloaded')
  for (let i = 0; i < 5; i++) await talk()
  t.equal(streams.filter((s) => s.destroyed).length, 0, 'no connection dropped across the reload')
  t.equal(rounds, 11)
  const counts: Record<string, number> = { a: 0, b: 0 }
  for (let i = 0; i < 40; i++) counts[await whoAnswers(port)]!++
  t.same(counts, { a: 30, b: 10 }, 'weights 3:1 apply after the reload')

  write(1, '    bogus: true')
  lb.proc.kill('SIGHUP')
  const rejected = await lb.waitForLog('reload rejected', (l) => l.msg === 'reload rejected: config invalid, keeping the running config')
  t.match(String((rejected.errors as string[])[0]), /l4lb\.yaml:9: services\[0\]\.bogus: unknown key/)
  await talk()
  const again: Record<string, number> = { a: 0, b: 0 }
  for (let i = 0; i < 40; i++) again[await whoAnswers(port)]!++
  t.same(again, { a: 30, b: 10 }, 'the running config is kept after an invalid reload')
  for (const s of streams) s.destroy()
})

function which(cmd: string): boolean {
  return ['/usr/bin', '/bin', '/usr/sbin', '/usr/local/bin'].some((d) => existsSync(path.join(d, cmd)))
}

t.test('systemd: READY=1 after listeners bind, RELOADING=1/READY=1 around a reload, STOPPING=1', { skip: !which('python3') || !which('systemd-notify') ? 'needs python3 and systemd-notify' : false }, async (t) => {
  const dir = tempDir(t, 'l4lb-test-')
  const sock = path.join(dir, 'notify.sock')
  // A few lines of Python stand in for systemd: they print each datagram sent to the socket.
  const receiver = 'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nwhile True: print(s.recv(65536).decode(), flush=True)'
  const sink = spawn('python3', ['-c', receiver, sock], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => sink.kill())
  let received = ''
  sink.stdout.setEncoding('utf8').on('data', (c: string) => (received += c))
  await eventually('the notify socket', () => existsSync(sock), 20_000)
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  const file = path.join(dir, 'l4lb.yaml')
  writeFileSync(file, `services:\n  - name: app\n    listen: ["127.0.0.1:0"]\n    health: {type: none}\n    backends: ["${a.address}"]\n`)
  const lb = await spawnL4lb(['-c', file], { env: { NOTIFY_SOCKET: sock } })
  t.teardown(() => lb.stop())
  await eventually('READY=1', () => received.includes('READY=1'))
  t.match(received, `MAINPID=${lb.proc.pid}`)
  received = ''
  lb.proc.kill('SIGHUP')
  await eventually('RELOADING=1 then READY=1', () => /RELOADING=1[\s\S]*READY=1/.test(received))
  received = ''
  lb.proc.kill('SIGTERM')
  await eventually('STOPPING=1', () => received.includes('STOPPING=1'))
  t.equal(await within(5000, 'exit', lb.exited), 0)
})

t.test('systemd-analyze verify accepts conf/l4lb.service', { skip: !which('systemd-analyze') ? 'needs systemd-analyze' : false }, async (t) => {
  const dir = tempDir(t, 'l4lb-test-')
  // verify checks that ExecStart's binary exists: point it at this checkout's bin/l4lb.
  const unit = readFileSync(path.join(ROOT, 'conf', 'l4lb.service'), 'utf8').replaceAll('/usr/bin/l4lb', BIN)
  const file = path.join(dir, 'l4lb.service')
  writeFileSync(file, unit)
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    // verify also asks man for the unit's Documentation=man:l4lb(1): the checkout's man/ has it.
    const manArgs = which('man') ? [] : ['--man=no']
    const p = spawn('systemd-analyze', ['verify', ...manArgs, file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MANPATH: path.join(ROOT, 'conf', 'man') } })
    let text = ''
    p.stdout.on('data', (c: Buffer) => (text += c.toString()))
    p.stderr.on('data', (c: Buffer) => (text += c.toString()))
    p.on('close', (code) => resolve({ code, text }))
  })
  // Lines about the host's own units (no systemd running in a container) are not ours.
  const ours = out.text.split('\n').filter((l) => l.includes('l4lb.service'))
  t.same(ours, [], `no complaint about l4lb.service (exit ${out.code})`)
})
