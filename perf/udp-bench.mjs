#!/usr/bin/env node
// UDP through l4lb vs nginx stream vs direct, side by side in one run (loopback only).
//
//   npm run build && node perf/udp-bench.mjs [--time 5] [--size 64] [--tput-size 512]
//
// One sockperf server is the backend. For each target — direct, l4lb `--protocol udp`, nginx
// `stream { listen udp; proxy_pass }` — it runs sockperf ping-pong (latency) and throughput
// (sender rate), and reads the kernel's Udp RcvbufErrors from /proc/net/snmp before and after
// each run (datagrams dropped because a socket buffer was full, anywhere on the host).
// Only processes started here are stopped, by their own handles.
import { spawn, execFileSync } from 'node:child_process'
import dgram from 'node:dgram'
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback
}
const SECONDS = Number(opt('time', '5'))
const SIZE = Number(opt('size', '64'))
const TPUT_SIZE = Number(opt('tput-size', '512'))
const NGINX_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so'

const started = []

function start(cmd, argv, name) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c) => (out += c))
  child.stderr.on('data', (c) => (out += c))
  child.output = () => out
  child.label = name
  started.push(child)
  return child
}

async function stopAll() {
  for (const child of started.reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
    await new Promise((resolve) => child.once('exit', resolve))
    clearTimeout(timer)
  }
}

async function freeUdpPort() {
  const s = dgram.createSocket('udp4')
  await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve))
  const port = s.address().port
  await new Promise((resolve) => s.close(resolve))
  return port
}

function udpSnmp() {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'))
  const keys = lines[0].split(/\s+/).slice(1)
  const values = lines[1].split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(keys.map((k, i) => [k, values[i]]))
}

/** sockperf servers answer only sockperf's own messages: a 1 s ping-pong is the readiness check. */
function waitReady(port, what) {
  for (let i = 0; i < 20; i++) {
    try {
      const r = sockperf('ping-pong', port, SIZE, 1)
      if (r.roundTrips > 0) return
    } catch {
      // not up yet
    }
    execFileSync('sleep', ['0.2'])
  }
  throw new Error(`${what} on port ${port} never answered`)
}

function sockperf(mode, port, size, seconds = SECONDS) {
  const out = execFileSync('sockperf', [mode, '-i', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-m', String(size)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: (seconds + 20) * 1000,
  })
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '')
  const num = (re) => {
    const m = re.exec(plain)
    return m ? Number(m[1]) : NaN
  }
  if (mode === 'ping-pong') {
    return {
      avgUs: num(/avg-latency=([0-9.]+)/),
      p50Us: num(/percentile 50\.000 =\s*([0-9.]+)/),
      p99Us: num(/percentile 99\.000 =\s*([0-9.]+)/),
      p999Us: num(/percentile 99\.900 =\s*([0-9.]+)/),
      roundTrips: num(/ReceivedMessages=([0-9]+)/),
      dropped: num(/# dropped messages = ([0-9]+)/),
    }
  }
  return { msgPerSec: num(/Message Rate is ([0-9.]+)/), mbps: num(/BandWidth is [0-9.]+ MBps \(([0-9.]+) Mbps\)/) }
}

async function main() {
  const backendPort = await freeUdpPort()
  const l4lbPort = await freeUdpPort()
  const nginxPort = await freeUdpPort()
  start('sockperf', ['server', '-i', '127.0.0.1', '-p', String(backendPort)], 'sockperf server')

  const l4lb = start(process.execPath, [
    path.join(ROOT, 'bin', 'l4lb'), '-l', `127.0.0.1:${l4lbPort}`, '--protocol', 'udp', '--check', 'none',
    '-b', `127.0.0.1:${backendPort}`, '--log-level', 'warn',
  ], 'l4lb')

  const dir = mkdtempSync(path.join(tmpdir(), 'udp-bench-nginx-'))
  writeFileSync(path.join(dir, 'nginx.conf'), `
load_module ${NGINX_MODULE};
worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
stream {
  server {
    listen 127.0.0.1:${nginxPort} udp;
    proxy_pass 127.0.0.1:${backendPort};
    proxy_timeout 30s;
  }
}
`)
  start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], 'nginx')

  const targets = [
    ['direct', backendPort],
    ['l4lb', l4lbPort],
    ['nginx', nginxPort],
  ]
  try {
    for (const [name, port] of targets) waitReady(port, name)
    const results = {}
    for (const [name, port] of targets) {
      const before = udpSnmp()
      const pp = sockperf('ping-pong', port, SIZE)
      const mid = udpSnmp()
      const tp = sockperf('throughput', port, TPUT_SIZE)
      const after = udpSnmp()
      results[name] = {
        ...pp, ...tp,
        rcvbufErrorsPingPong: mid.RcvbufErrors - before.RcvbufErrors,
        rcvbufErrorsThroughput: after.RcvbufErrors - mid.RcvbufErrors,
      }
      await sleep(200)
    }
    console.log(`UDP loopback, ${SECONDS}s per run, ping-pong ${SIZE} B, throughput ${TPUT_SIZE} B; node ${process.version}; ${new Date().toISOString()}`)
    console.log('')
    const cols = ['avgUs', 'p50Us', 'p99Us', 'p999Us', 'roundTrips', 'msgPerSec', 'mbps', 'rcvbufErrorsPingPong', 'rcvbufErrorsThroughput']
    console.log(['target'.padEnd(8), ...cols.map((c) => c.padStart(12))].join(' '))
    for (const [name] of targets) {
      const r = results[name]
      console.log([name.padEnd(8), ...cols.map((c) => String(Number.isFinite(r[c]) ? Math.round(r[c] * 100) / 100 : '-').padStart(12))].join(' '))
    }
    const d = results.direct
    const l = results.l4lb
    const n = results.nginx
    const ratio = (a, b) => (b > 0 ? (a / b).toFixed(2) : '-')
    console.log('')
    console.log(`round trips/s   l4lb/direct ${ratio(l.roundTrips, d.roundTrips)}  nginx/direct ${ratio(n.roundTrips, d.roundTrips)}  l4lb/nginx ${ratio(l.roundTrips, n.roundTrips)}`)
    console.log(`p50 latency     l4lb/direct ${ratio(l.p50Us, d.p50Us)}  nginx/direct ${ratio(n.p50Us, d.p50Us)}  l4lb/nginx ${ratio(l.p50Us, n.p50Us)}`)
    console.log(`p99 latency     l4lb/direct ${ratio(l.p99Us, d.p99Us)}  nginx/direct ${ratio(n.p99Us, d.p99Us)}  l4lb/nginx ${ratio(l.p99Us, n.p99Us)}`)
    console.log(`sender msg/s    l4lb/direct ${ratio(l.msgPerSec, d.msgPerSec)}  nginx/direct ${ratio(n.msgPerSec, d.msgPerSec)}  l4lb/nginx ${ratio(l.msgPerSec, n.msgPerSec)}`)
    console.log('(throughput is the sender\'s rate; datagrams lost on the way show up as RcvbufErrors)')
    if (args.includes('--json')) console.log(JSON.stringify(results))
  } catch (err) {
    for (const c of started) console.error(`--- ${c.label}:\n${c.output().slice(-2000)}`)
    throw err
  } finally {
    await stopAll()
    rmSync(dir, { recursive: true, force: true })
    if (l4lb.exitCode !== null && l4lb.exitCode !== 0) console.error(`l4lb exited ${l4lb.exitCode}`)
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
