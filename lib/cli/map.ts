/**
 * `l4lb map`: which backend each client key goes to under a config, computed the way the data
 * path computes it (canonical address → keyHash → the pool's picker) but with no sockets. Two
 * hosts behind keepalived or ECMP agree when their outputs agree; `--admin` maps over the live
 * usable set of a running instance instead of "every backend up".
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import type { Command } from 'commander'
import { canonicalIp } from '../address/index.js'
import type { Status } from '../admin/index.js'
import { algorithmNames, keyHash, resolveAlgorithm } from '../balance/index.js'
import type { BackendConfig, Config, FlagValues, ServiceConfig } from '../config/index.js'
import { Pool } from '../pool/index.js'
import { request } from './admin-client.js'
import { ExitError, EXIT_RUNTIME, EXIT_USAGE } from './index.js'

/** A client address as the key stage sees it: canonical IP, and the source port when given. */
export interface ClientKey {
  readonly text: string
  readonly ip: string
  readonly port: number | undefined
}

/** One service of a running instance, as its /status reports it. */
type LiveService = Status['services'][number]

export interface MapOptions extends FlagValues {
  key?: string[]
  keysFrom?: string
  service?: string
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/**
 * Declares the subcommand; the caller adds the run flags (so `map` reads a config exactly as
 * `run` does) and passes the loader it uses for `run`.
 */
export function mapCommand(program: Command, loadConfig: (opts: FlagValues) => Config): Command {
  return program
    .command('map')
    .description('print the backend each client key maps to under a config (-c FILE or run flags); with --admin ADDR, over the live health of that running l4lb')
    .option('-k, --key <ip[:port]>', 'client address to map, repeatable', collect)
    .option('--keys-from <file>', 'file of client addresses, one per line ("-" = stdin; # comments)')
    .option('--service <name>', 'map for this service only (default: every service with a hashing algorithm)')
    .action(async (opts: MapOptions) => {
      // The listen address plays no part in where a key goes; `map -b A -b B --key K` should not
      // need one, but the run flags' validation does.
      const flags = !opts.config && !opts.listen ? { ...opts, listen: [':1'] } : opts
      process.stdout.write(await runMap(loadConfig(flags), opts))
    })
}

export async function runMap(config: Config, opts: MapOptions): Promise<string> {
  const keys = [...(opts.key ?? []).map((k) => parseClientKey(k, `--key ${JSON.stringify(k)}`)), ...(opts.keysFrom ? readKeys(opts.keysFrom) : [])]
  if (keys.length === 0) throw new ExitError(EXIT_USAGE, 'map: give client addresses with --key ADDR or --keys-from FILE')
  let services = config.services
  if (opts.service !== undefined) {
    services = services.filter((s) => s.name === opts.service)
    if (services.length === 0) throw new ExitError(EXIT_USAGE, `--service "${opts.service}": no such service (have: ${config.services.map((s) => s.name).join(', ')})`)
    const only = services[0]!
    if (!isHashed(only)) throw new ExitError(EXIT_USAGE, `--service "${only.name}": ${notHashed(only)}`)
  }
  const hashed = services.filter(isHashed)
  if (hashed.length === 0) throw new ExitError(EXIT_USAGE, `map: ${services.map((s) => `service ${s.name}: ${notHashed(s)}`).join('; ')}`)
  const admin = typeof opts.admin === 'string' ? opts.admin : undefined
  const live = admin ? await fetchLive(admin, typeof opts.adminTokenFile === 'string' ? opts.adminTokenFile : undefined) : undefined
  let out = ''
  for (const service of services) {
    if (!isHashed(service)) {
      out += `# service ${service.name}: ${service.balance} does not map keys (skipped)\n`
      continue
    }
    const liveService = live && findLive(live, config, service, admin!)
    const { pool, notes } = buildPool(service, liveService)
    const where = liveService ? `live from ${admin}` : 'every backend up'
    out += `# service ${service.name}: ${service.balance} by ${service.hashKey}, ${pool.usableCount} of ${pool.backends.length} backends usable (${where})${notes.length > 0 ? `; ${notes.join('; ')}` : ''}\n`
    for (const key of keys) out += `${key.text} ${mapKey(pool, service, key) ?? '-'}\n`
  }
  return out
}

function isHashed(service: ServiceConfig): boolean {
  return resolveAlgorithm(service.balance)?.hashed === true
}

function notHashed(service: ServiceConfig): string {
  const hashing = algorithmNames.filter((n) => resolveAlgorithm(n)?.hashed)
  return `balances with ${service.balance}, which ties no key to a backend (map needs one of ${hashing.join(', ')})`
}

/**
 * The backend a key maps to, or undefined when nothing is usable. The same steps as the data
 * path's key and pick stages (tcp/service.ts hashOf), so a difference here is one there.
 */
export function mapKey(pool: Pool, service: ServiceConfig, key: ClientKey): string | undefined {
  if (service.hashKey === 'src-ip-port' && key.port === undefined) {
    throw new ExitError(EXIT_USAGE, `key ${JSON.stringify(key.text)}: service ${service.name} hashes src-ip-port, so keys need a port (ip:port)`)
  }
  const hash = keyHash(service.hashKey === 'src-ip' ? key.ip : `${key.ip}:${key.port!}`)
  return pool.pick(hash)?.name
}

/**
 * A pool as the service would build it: the configured backends (hashing sees names and weights,
 * never resolved addresses, so no DNS is needed), with the live instance's states applied when
 * there is one. `notes` says where config and instance disagree, since then their maps differ.
 */
export function buildPool(service: ServiceConfig, live?: LiveService): { pool: Pool; notes: string[] } {
  const notes: string[] = []
  const backends: BackendConfig[] = service.backends.filter((b) => !b.srv)
  if (backends.length < service.backends.length) {
    if (!live) throw new ExitError(EXIT_USAGE, `service ${service.name} has srv: backends, which only a running l4lb expands: add --admin ADDR to map over its live set`)
    // SRV targets are whatever the instance resolved; take them from it as they are.
    const named = new Set(backends.map((b) => b.name))
    const srvBackend = service.backends.find((b) => b.srv)!
    for (const b of live.backends) {
      if (named.has(b.address)) continue
      const colon = b.address.lastIndexOf(':')
      backends.push({ ...srvBackend, name: b.address, host: b.address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(b.address.slice(colon + 1)), weight: b.weight, backup: b.backup, srv: false })
    }
  } else if (live) {
    const configured = new Set(backends.map((b) => b.name))
    const extra = live.backends.filter((b) => !configured.has(b.address)).map((b) => b.address)
    if (extra.length > 0) notes.push(`the instance also has ${extra.join(', ')} (not in this config: maps may differ)`)
  }
  if (live && live.balance !== service.balance) notes.push(`the instance balances with ${live.balance}, this config with ${service.balance}`)
  const pool = new Pool({ name: service.name, balance: service.balance, backends, addresses: backends.map((b) => b.host), checked: false })
  if (!live) return { pool, notes }
  const byName = new Map(live.backends.map((b) => [b.address, b]))
  const notUp: string[] = []
  for (const b of pool.backends) {
    const state = byName.get(b.name)?.state
    if (state === undefined) {
      pool.setHealth(b.id, false, 'not on the live instance')
      notes.push(`${b.name} is not on the instance`)
      continue
    }
    if (state === 'down' || state === 'starting') pool.setHealth(b.id, false, `live: ${state}`)
    else if (state === 'drain' || state === 'maint') pool.setAdmin(b.id, state, `live: ${state}`)
    if (state !== 'up') notUp.push(`${b.name} ${state}`)
  }
  if (notUp.length > 0) notes.push(notUp.join(', '))
  return { pool, notes }
}

/** `203.0.113.7`, `2001:db8::7`, `203.0.113.7:40000` or `[2001:db8::7]:40000`. */
export function parseClientKey(text: string, where: string): ClientKey {
  const bad = (): ExitError => new ExitError(EXIT_USAGE, `${where}: not a client address (ip, ip:port or [ipv6]:port)`)
  let ip = text
  let portText: string | undefined
  const bracketed = /^\[([^\]]+)\]:([0-9]+)$/.exec(text)
  if (bracketed) {
    ip = bracketed[1]!
    portText = bracketed[2]!
    if (isIP(ip) !== 6) throw bad()
  } else if (isIP(text) === 0) {
    const colon = text.lastIndexOf(':')
    if (colon < 0 || text.indexOf(':') !== colon) throw bad()
    ip = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (isIP(ip) !== 4) throw bad()
  }
  let port: number | undefined
  if (portText !== undefined) {
    port = Number(portText)
    if (!/^[0-9]{1,5}$/.test(portText) || port > 65535) throw new ExitError(EXIT_USAGE, `${where}: port must be 0-65535`)
  }
  return { text, ip: canonicalIp(ip), port }
}

function readKeys(file: string): ClientKey[] {
  let text: string
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8')
  } catch (err) {
    throw new ExitError(EXIT_USAGE, `--keys-from ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const keys: ClientKey[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*/, '').trim()
    if (line !== '') keys.push(parseClientKey(line, `${file}:${i + 1}: ${JSON.stringify(line)}`))
  }
  return keys
}

async function fetchLive(admin: string, adminTokenFile: string | undefined): Promise<Status> {
  const target = { admin, ...(adminTokenFile ? { adminTokenFile } : {}) }
  const { status, body } = await request(target, 'GET', '/status')
  if (status !== 200) throw new ExitError(EXIT_RUNTIME, `admin endpoint answered ${status}: ${body.trim()}`)
  return JSON.parse(body) as Status
}

function findLive(live: Status, config: Config, service: ServiceConfig, admin: string): LiveService {
  // One service each side (say, flags without --name): they can only mean each other.
  const found = live.services.find((s) => s.name === service.name) ?? (live.services.length === 1 && config.services.length === 1 ? live.services[0] : undefined)
  if (!found) throw new ExitError(EXIT_RUNTIME, `the l4lb at ${admin} has no service "${service.name}" (it has: ${live.services.map((s) => s.name).join(', ')})`)
  return found
}
