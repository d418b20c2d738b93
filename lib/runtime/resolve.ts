/**
 * Backend names are resolved here, at load and every `resolveInterval` — never per connection
 * (DESIGN: hot path stays lean). Hostnames resolve to one address each (the name, not the IP,
 * is what hashing uses, so an address change moves no client); `srv:` names expand to one
 * backend per SRV target with its port and weight.
 */
import dns from 'node:dns/promises'
import { isIP } from 'node:net'
import { formatHostPort } from '../address/index.js'
import { MAX_WEIGHT } from '../balance/index.js'
import type { BackendConfig } from '../config/index.js'
import { ResolveError } from '../errors.js'

export interface NameResolver {
  address(host: string): Promise<string>
  srv(name: string): Promise<Array<{ name: string; port: number; priority: number; weight: number }>>
}

/** The system resolver (getaddrinfo, /etc/hosts included), or explicit DNS servers. */
export function createResolver(servers: readonly string[]): NameResolver {
  if (servers.length === 0) {
    return {
      address: async (host) => (await dns.lookup(host)).address,
      srv: (name) => dns.resolveSrv(name),
    }
  }
  const resolver = new dns.Resolver({ timeout: 2000, tries: 2 })
  resolver.setServers([...servers])
  return {
    async address(host) {
      try {
        const v4 = await resolver.resolve4(host)
        if (v4[0]) return v4[0]
      } catch (err) {
        const v6 = await resolver.resolve6(host).catch(() => [])
        if (v6[0]) return v6[0]
        throw err
      }
      const v6 = await resolver.resolve6(host)
      if (v6[0]) return v6[0]
      throw Object.assign(new Error('no address'), { code: 'ENODATA' })
    },
    srv: (name) => resolver.resolveSrv(name),
  }
}

export interface ResolvedBackends {
  /** The configured backends with `srv:` entries expanded, in a stable order. */
  readonly backends: BackendConfig[]
  /** The IP to dial for each backend, same order. */
  readonly addresses: string[]
  /**
   * Backends whose name did not resolve, by backend name → the DNS error ("ENOTFOUND"). They are
   * in `backends` (an SRV name as itself) so the service starts degraded with them down and
   * says why, instead of not starting at all (issue 16); the next refresh tries again.
   */
  readonly unresolved: ReadonlyMap<string, string>
}

/** SRV weights are 0..65535 and relative within a priority; ours are 1..256. */
function srvWeight(weight: number, max: number): number {
  if (max <= 0) return 1
  return Math.max(1, Math.min(MAX_WEIGHT, Math.round((weight / max) * MAX_WEIGHT)))
}

export async function resolveBackends(configured: readonly BackendConfig[], resolver: NameResolver): Promise<ResolvedBackends> {
  const backends: BackendConfig[] = []
  const addresses: string[] = []
  const unresolved = new Map<string, string>()
  const failed = (b: BackendConfig, err: unknown): void => {
    backends.push(b)
    addresses.push(b.host)
    unresolved.set(b.name, err instanceof Error ? err.message : String(err))
  }
  for (const b of configured) {
    if (!b.srv) {
      try {
        addresses.push(b.family !== 0 ? b.host : await resolveOne(resolver, b.host))
        backends.push(b)
      } catch (err) {
        failed(b, err)
      }
      continue
    }
    let records: Awaited<ReturnType<NameResolver['srv']>>
    try {
      records = await resolver.srv(b.host)
    } catch (err) {
      failed(b, new ResolveError(b.name, (err as NodeJS.ErrnoException).code ?? String(err), err))
      continue
    }
    if (records.length === 0) {
      failed(b, new ResolveError(b.name, 'no SRV records'))
      continue
    }
    // Only the best (lowest) priority is in rotation; the others are backups (RFC 2782).
    const best = Math.min(...records.map((r) => r.priority))
    const max = Math.max(...records.map((r) => r.weight))
    const sorted = [...records].sort((x, y) => x.priority - y.priority || (x.name < y.name ? -1 : x.name > y.name ? 1 : x.port - y.port))
    for (const r of sorted) {
      const host = r.name.toLowerCase().replace(/\.$/, '')
      const family = isIP(host)
      const backend: BackendConfig = {
        ...b,
        name: formatHostPort(host, r.port),
        host,
        port: r.port,
        family: family === 4 || family === 6 ? family : 0,
        weight: srvWeight(r.weight, max),
        backup: b.backup || r.priority !== best,
        srv: false,
      }
      try {
        addresses.push(family ? host : await resolveOne(resolver, host))
        backends.push(backend)
      } catch (err) {
        failed(backend, err)
      }
    }
  }
  const seen = new Set<string>()
  const unique = backends.map((b, i) => ({ b, a: addresses[i]! })).filter(({ b }) => !seen.has(b.name) && seen.add(b.name))
  return { backends: unique.map((u) => u.b), addresses: unique.map((u) => u.a), unresolved }
}

/** One host name to an address; a failure is a ResolveError naming the host. */
export async function resolveOne(resolver: NameResolver, host: string): Promise<string> {
  try {
    return await resolver.address(host)
  } catch (err) {
    throw new ResolveError(host, (err as NodeJS.ErrnoException).code ?? String(err), err)
  }
}

/** True when the service needs periodic re-resolution at all. */
export function hasNames(backends: readonly BackendConfig[]): boolean {
  return backends.some((b) => b.srv || b.family === 0)
}

/** What must match for a refresh to change nothing. */
export function signature(r: ResolvedBackends): string {
  return r.backends.map((b, i) => `${b.name}/${b.weight}/${b.backup ? 1 : 0}@${r.unresolved.has(b.name) ? '?' : r.addresses[i]}`).join(',')
}
