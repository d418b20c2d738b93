#!/usr/bin/env node
// What sending a PROXY v2 header costs in new connections per second.
//
//   node perf/proxy-overhead.mjs [--seconds 5] [--rounds 3] [--connections 32] [--threads 1]
//
// One nginx (http) with two servers: a plain one and one with `listen ... proxy_protocol`. Two
// l4lb processes in front, identical but for `--proxy-protocol v2`. wrk with `Connection: close`
// (one request per connection, so the rate is a connection rate) runs against each in turn,
// alternating A B A B so drift on the machine hits both alike. Prints each run and the ratio of
// the medians. Needs nginx and wrk on PATH (/usr/sbin/nginx); run `npm run build` first.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const SECONDS = arg('seconds', 5)
const ROUNDS = arg('rounds', 3)
const CONNECTIONS = arg('connections', 32)
const THREADS = arg('threads', 1)
const NGINX = process.env.NGINX ?? '/usr/sbin/nginx'

const started = []
const dir = mkdtempSync(join(tmpdir(), 'l4lb-pp-perf-'))
function cleanup() {
  // nginx: SIGQUIT to the master takes its workers with it (SIGKILL would orphan them)
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill(p === nginxProc ? 'SIGQUIT' : 'SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
let nginxProc
process.on('exit', cleanup)
process.on('SIGINT', () => process.exit(130))

async function freePort() {
  const s = net.createServer()
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address()
  await new Promise((r) => s.close(r))
  return port
}

async function waitConnectable(port) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' })
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing on 127.0.0.1:${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function startL4lb(backendPort, extra) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/l4lb'), '-l', '127.0.0.1:0', '--check', 'none', '-b', `127.0.0.1:${backendPort}`, ...extra], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    started.push(p)
    let buffered = ''
    const onData = (chunk) => {
      buffered += chunk
      const m = /"listen":\["[^"]*:(\d+)"\]/.exec(buffered)
      if (m) {
        p.stdout.removeListener('data', onData)
        p.stdout.resume() // drain the per-connection log lines, as a log shipper would
        resolve(Number(m[1]))
      }
    }
    p.stdout.setEncoding('utf8').on('data', onData)
    p.once('exit', (code) => reject(new Error(`l4lb exited ${code}`)))
  })
}

function wrk(port) {
  const out = execFileSync('wrk', ['-t', String(THREADS), '-c', String(CONNECTIONS), '-d', `${SECONDS}s`, '-H', 'Connection: close', `http://127.0.0.1:${port}/`], { encoding: 'utf8' })
  const rate = /Requests\/sec:\s+([0-9.]+)/.exec(out)
  const errors = /Socket errors: (.*)/.exec(out)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  if (!rate) throw new Error(`no rate in wrk output:\n${out}`)
  return { rate: Number(rate[1]), errors: errors?.[1], non2xx: non2xx ? Number(non2xx[1]) : 0 }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const plainPort = await freePort()
const ppPort = await freePort()
writeFileSync(
  join(dir, 'nginx.conf'),
  `worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server { listen 127.0.0.1:${plainPort}; location / { return 200 "ok\\n"; } }
  server { listen 127.0.0.1:${ppPort} proxy_protocol; location / { return 200 "ok\\n"; } }
}
`,
)
const nginx = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' })
nginxProc = nginx
started.push(nginx)
await waitConnectable(plainPort)
await waitConnectable(ppPort)

const plainLb = await startL4lb(plainPort, [])
const ppLb = await startL4lb(ppPort, ['--proxy-protocol', 'v2'])
console.log(`node ${process.version}, wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s Connection: close, ${ROUNDS} rounds alternating`)
wrk(plainLb) // warm-up: JIT, accept queues, nginx worker
wrk(ppLb)
const plain = []
const v2 = []
for (let i = 0; i < ROUNDS; i++) {
  const a = wrk(plainLb)
  plain.push(a.rate)
  console.log(`round ${i + 1}  none  ${a.rate.toFixed(0)} conn/s${a.errors ? `  (socket errors: ${a.errors})` : ''}${a.non2xx ? `  non-2xx ${a.non2xx}` : ''}`)
  const b = wrk(ppLb)
  v2.push(b.rate)
  console.log(`round ${i + 1}  v2    ${b.rate.toFixed(0)} conn/s${b.errors ? `  (socket errors: ${b.errors})` : ''}${b.non2xx ? `  non-2xx ${b.non2xx}` : ''}`)
}
const ratio = median(v2) / median(plain)
// The part of the cost that is ours alone, without the machine's noise: building one header
const { encodeV2, makeUniqueId, uniqueIdTlv } = await import(join(ROOT, 'dist/lib/proxy-protocol/index.js'))
const src = { address: '203.0.113.9', port: 40000 }
const dst = { address: '127.0.0.1', port: 5432 }
for (let i = 0; i < 20_000; i++) encodeV2({ command: 'proxy', transport: 'stream', src, dst, tlvs: [uniqueIdTlv(makeUniqueId())] })
const n = 200_000
const t0 = process.hrtime.bigint()
for (let i = 0; i < n; i++) encodeV2({ command: 'proxy', transport: 'stream', src, dst, tlvs: [uniqueIdTlv(makeUniqueId())] })
const perHeaderUs = Number(process.hrtime.bigint() - t0) / n / 1000
console.log(`one v2 header with UNIQUE_ID (id + encode): ${perHeaderUs.toFixed(2)} µs`)
console.log(`median none ${median(plain).toFixed(0)} conn/s, v2 ${median(v2).toFixed(0)} conn/s: v2/none = ${ratio.toFixed(3)} (cost ${((1 - ratio) * 100).toFixed(1)}%)`)
process.exit(0)
