/**
 * A throwaway PostgreSQL for interop tests: initdb on a temp dir, started on a free loopback
 * port, stopped and removed at teardown. PostgreSQL refuses to run as root, so under root its
 * tools run as the `postgres` user (`runuser`), which owns the directory.
 */
import { execFile } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { freePort } from './index.js'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

export const run = promisify(execFile)

export function findPgBin(): string | null {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
  for (const v of versions) {
    const bin = join(root, v, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
  }
  return null
}

async function postgresUser(): Promise<{ uid: number; gid: number } | null> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  } catch {
    return null
  }
}

/** Why PostgreSQL tests cannot run here, or null when they can. */
export async function postgresUnavailable(): Promise<string | null> {
  if (!findPgBin()) return 'no initdb/pg_ctl under /usr/lib/postgresql/*/bin'
  if (process.getuid?.() === 0 && !(await postgresUser())) return 'running as root and no postgres user to run PostgreSQL as'
  return null
}

export class TestPostgres {
  readonly dir = mkdtempSync(join(tmpdir(), 'l4lb-pg-'))
  port = 0
  #running = false
  readonly #bin = findPgBin()!

  #as(tool: string, args: string[], timeout = 60_000): Promise<{ stdout: string; stderr: string }> {
    const path = join(this.#bin, tool)
    return process.getuid?.() === 0 ? run('runuser', ['-u', 'postgres', '--', path, ...args], { timeout }) : run(path, args, { timeout })
  }

  async start(): Promise<this> {
    const user = process.getuid?.() === 0 ? await postgresUser() : null
    if (user) chownSync(this.dir, user.uid, user.gid)
    await this.#as('initdb', ['-D', join(this.dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync'])
    // A free port can be taken by another test between freePort() and the postmaster's bind
    // (tests run in parallel, several start PostgreSQL): try another port, a bounded few times.
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort()
      try {
        await this.#as('pg_ctl', ['-D', join(this.dir, 'data'), '-w', '-t', '30', '-l', join(this.dir, 'log'), '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start'])
        break
      } catch (err) {
        const log = existsSync(join(this.dir, 'log')) ? readFileSync(join(this.dir, 'log'), 'utf8') : ''
        if (attempt >= 3 || !/already in use/i.test(log)) throw err
      }
    }
    this.#running = true
    return this
  }

  /** Runs a client tool from the same PostgreSQL (psql, pgbench) as the postgres user. */
  client(tool: string, args: string[], timeout = 120_000): Promise<{ stdout: string; stderr: string }> {
    return this.#as(tool, args, timeout)
  }

  async stop(): Promise<void> {
    if (this.#running) await this.#as('pg_ctl', ['-D', join(this.dir, 'data'), '-w', '-t', '30', '-m', 'immediate', 'stop']).catch(() => {})
    this.#running = false
    rmSync(this.dir, { recursive: true, force: true })
  }
}
