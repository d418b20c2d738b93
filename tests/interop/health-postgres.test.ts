// The send-expect check against a real PostgreSQL: the SSLRequest is answered 'S' or 'N' by
// every PostgreSQL since 7.2, before authentication, so the check needs no credentials.
// Skips cleanly when no PostgreSQL server binaries are installed.
import { execFile } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { Prober } from '../../lib/health/index.js'
import { EventLog } from '../health/helpers.js'

const run = promisify(execFile)
const SSL_REQUEST = Buffer.from('0000000804d2162f', 'hex')

function findPgBin(): string | null {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
  for (const v of versions) {
    const bin = join(root, v, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
  }
  return null
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function postgresUser(): Promise<{ uid: number; gid: number } | null> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  } catch {
    return null
  }
}

const bin = findPgBin()
const isRoot = process.getuid?.() === 0
const pgUser = isRoot ? await postgresUser() : null

if (!bin) {
  t.plan(0, 'no initdb/pg_ctl under /usr/lib/postgresql/*/bin')
} else if (isRoot && !pgUser) {
  t.plan(0, 'running as root and no postgres user to run PostgreSQL as')
} else {
  t.test('a real PostgreSQL answers the SSLRequest check; stopping it takes the backend out after fall checks', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'l4lb-pg-'))
    // PostgreSQL refuses to run as root: run its tools as the postgres user, which owns the dir.
    const asPg = (tool: string, args: string[]) =>
      isRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { timeout: 60_000 }) : run(join(bin, tool), args, { timeout: 60_000 })
    if (pgUser) chownSync(dir, pgUser.uid, pgUser.gid)
    const port = await freePort()
    const pgCtl = (action: string, extra: string[] = []) => asPg('pg_ctl', ['-D', join(dir, 'data'), '-w', '-t', '30', ...extra, action])
    let running = false
    t.teardown(async () => {
      if (running) await pgCtl('stop', ['-m', 'immediate']).catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    })

    await asPg('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync'])
    await pgCtl('start', ['-l', join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`])
    running = true

    const log = new EventLog()
    const prober = new Prober(
      { type: 'send-expect', send: SSL_REQUEST, expect: [Buffer.from('S'), Buffer.from('N')], intervalMs: 50, timeoutMs: 2000, rise: 2, fall: 3 },
      [{ id: 1, name: `127.0.0.1:${port}`, host: '127.0.0.1', port }],
      log.listener,
    )
    t.teardown(() => prober.stop())
    prober.start()
    const up = await log.next((e) => e.to === 'up', 10_000, 'PostgreSQL to pass the check')
    t.equal(up.reason, 'first check passed')
    t.equal(prober.isUp(1), true)

    await pgCtl('stop', ['-m', 'fast'])
    running = false
    const down = await log.next((e) => e.to === 'down', 10_000, 'the down event')
    // A check caught mid-shutdown may fail otherwise; once stopped, connects are refused.
    t.match(down.reason, /^3 consecutive failed checks \(last: /)
    t.equal(prober.history(1).at(-1)?.error, 'ECONNREFUSED')
    await prober.stop()
  })
}
