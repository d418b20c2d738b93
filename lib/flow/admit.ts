/**
 * The admit stage (DESIGN: listener → admit → accept-proxy …; issue 12 item 3), shared by the
 * TCP and UDP data paths: allow/deny CIDR lists (deny wins), a global limit, a per-source limit
 * on what is open at once, and a per-source rate of new connections (TCP) or new sessions (UDP).
 *
 * Built once per service config; `admit(ip)` per new connection/session answers null (admitted
 * and counted: call `release(ip)` exactly once when it ends) or the reason it is refused (nothing
 * counted, nothing to release). Refusals are counted per reason in `refused`, which /metrics
 * reads as `l4lb_refused_total{service,reason}`.
 *
 * Per call: one parse of the address text into a scratch array (no allocation), one Map lookup
 * per enabled per-source limit. IPv4 sources (including IPv4-mapped IPv6 from a dual-stack
 * listener) are keyed by an int32, so the tables keep no string for them.
 */
import { CidrList, parseIpInto } from '../address/index.js'
import { TokenBuckets, type SourceKey } from './limiter.js'

/** Every reason a new connection or session is refused at admission; label values of l4lb_refused_total. */
export const REFUSAL_REASONS = [
  'denied',
  'not-allowed',
  'max-conns',
  'max-conns-per-ip',
  'rate-per-ip',
  'max-sessions',
  'max-sessions-per-ip',
] as const

export type RefusalReason = (typeof REFUSAL_REASONS)[number]

export type RefusalCounts = { [R in RefusalReason]: number }

/**
 * The settings admission reads, by their config names (a structural subset of ServiceConfig:
 * pass the service's config). 0 or absent = no limit; empty or absent lists = no ACL.
 */
export interface AdmissionSettings {
  /** CIDRs (or single addresses) allowed in; when non-empty, every other source is refused `not-allowed`. */
  readonly allow?: readonly string[]
  /** CIDRs refused `denied`; checked first (deny wins over allow). */
  readonly deny?: readonly string[]
  readonly maxConns?: number
  readonly maxConnsPerIp?: number
  /** New connections (TCP) or sessions (UDP) per second per source; 0 = off. */
  readonly ratePerIp?: number
  readonly udpMaxSessions?: number
  readonly udpMaxSessionsPerIp?: number
}

/** What is limited, in the data path's own unit. */
export interface AdmissionLimits {
  readonly allow: readonly string[]
  readonly deny: readonly string[]
  /** Open at once in the whole service; 0 = no limit. */
  readonly maxActive: number
  /** Open at once from one source; 0 = no limit. */
  readonly maxActivePerIp: number
  /** New ones per second per source; 0 = off. */
  readonly ratePerIp: number
  /** Names the reasons: `max-conns…` for connections, `max-sessions…` for sessions. */
  readonly unit: 'connections' | 'sessions'
}

export interface AdmissionOptions {
  /** Rate bucket size; default = ratePerIp (see limiter.ts for why). */
  readonly rateBurst?: number
  /** Most sources whose rate is tracked; default 2^20. */
  readonly maxSources?: number
  /** Monotonic milliseconds; injectable for tests. */
  readonly now?: () => number
}

export class Admission {
  readonly limits: AdmissionLimits
  /** Refusals since the service started, per reason (read by /metrics). */
  readonly refused: RefusalCounts = zeroCounts()
  readonly #deny: CidrList | undefined
  readonly #allow: CidrList | undefined
  readonly #maxReason: RefusalReason
  readonly #perIpReason: RefusalReason
  /** Open per source; a source leaves the map when its last one ends, so it is bounded by `active`. */
  readonly #perIp: Map<SourceKey, number> | undefined
  readonly #rate: TokenBuckets | undefined
  #active = 0

  constructor(limits: AdmissionLimits, options: AdmissionOptions = {}) {
    this.limits = limits
    this.#deny = limits.deny.length > 0 ? new CidrList(limits.deny) : undefined
    this.#allow = limits.allow.length > 0 ? new CidrList(limits.allow) : undefined
    this.#maxReason = limits.unit === 'connections' ? 'max-conns' : 'max-sessions'
    this.#perIpReason = limits.unit === 'connections' ? 'max-conns-per-ip' : 'max-sessions-per-ip'
    this.#perIp = limits.maxActivePerIp > 0 ? new Map() : undefined
    this.#rate = limits.ratePerIp > 0
      ? new TokenBuckets({ ratePerSec: limits.ratePerIp, burst: options.rateBurst, maxSources: options.maxSources, now: options.now })
      : undefined
  }

  /** Admission for a TCP service: connections, `maxConns`, `maxConnsPerIp`. */
  static forTcp(settings: AdmissionSettings, options?: AdmissionOptions): Admission {
    return new Admission({
      allow: settings.allow ?? [],
      deny: settings.deny ?? [],
      maxActive: settings.maxConns ?? 0,
      maxActivePerIp: settings.maxConnsPerIp ?? 0,
      ratePerIp: settings.ratePerIp ?? 0,
      unit: 'connections',
    }, options)
  }

  /** Admission for a UDP service: new sessions, `udpMaxSessions`, `udpMaxSessionsPerIp`. */
  static forUdp(settings: AdmissionSettings, options?: AdmissionOptions): Admission {
    return new Admission({
      allow: settings.allow ?? [],
      deny: settings.deny ?? [],
      maxActive: settings.udpMaxSessions ?? 0,
      maxActivePerIp: settings.udpMaxSessionsPerIp ?? 0,
      ratePerIp: settings.ratePerIp ?? 0,
      unit: 'sessions',
    }, options)
  }

  /** Admitted and not yet released. */
  get active(): number {
    return this.#active
  }

  /** Admitted and not yet released from this source (0 when maxActivePerIp is off: not tracked). */
  activeOf(ip: string): number {
    return this.#perIp?.get(sourceKey(ip)) ?? 0
  }

  /** The rate table, for /status and tests; undefined when ratePerIp is off. */
  get rateTable(): TokenBuckets | undefined {
    return this.#rate
  }

  /**
   * null: admitted and counted (release it later); otherwise the refusal reason, counted in
   * `refused`. Order: ACLs (no state), the global limit, the per-source limit, and the rate
   * last, so a connection refused for another reason spends no token.
   * Precondition: `ip` is an address as a socket reports it (any IPv4, IPv6 or mapped form).
   */
  admit(ip: string): RefusalReason | null {
    const family = parseIpInto(ip, WORDS)
    if (this.#deny !== undefined && family !== 0 && this.#deny.containsWords(family, WORDS)) return this.#refuse('denied')
    if (this.#allow !== undefined && (family === 0 || !this.#allow.containsWords(family, WORDS))) return this.#refuse('not-allowed')
    const maxActive = this.limits.maxActive
    if (maxActive > 0 && this.#active >= maxActive) return this.#refuse(this.#maxReason)
    const perIp = this.#perIp
    if (perIp === undefined && this.#rate === undefined) {
      this.#active++
      return null
    }
    const key = keyOf(ip, family)
    const open = perIp?.get(key) ?? 0
    if (perIp !== undefined && open >= this.limits.maxActivePerIp) return this.#refuse(this.#perIpReason)
    if (this.#rate !== undefined && !this.#rate.take(key)) return this.#refuse('rate-per-ip')
    perIp?.set(key, open + 1)
    this.#active++
    return null
  }

  /** Ends one admitted connection/session from `ip`. Precondition: admit(ip) returned null for it. */
  release(ip: string): void {
    if (this.#active > 0) this.#active--
    const perIp = this.#perIp
    if (perIp === undefined) return
    const key = sourceKey(ip)
    const open = perIp.get(key)
    if (open === undefined) return
    if (open <= 1) perIp.delete(key)
    else perIp.set(key, open - 1)
  }

  #refuse(reason: RefusalReason): RefusalReason {
    this.refused[reason]++
    return reason
  }
}

const WORDS = new Uint32Array(4)

/**
 * The per-source table key: IPv4 (and IPv4-mapped IPv6) as an int32 — a small integer V8
 * stores in the Map without a heap object — and anything else as its text.
 */
export function sourceKey(ip: string): SourceKey {
  return keyOf(ip, parseIpInto(ip, WORDS))
}

function keyOf(ip: string, family: 0 | 4 | 6): SourceKey {
  return family === 4 ? WORDS[0]! | 0 : ip
}

export function zeroCounts(): RefusalCounts {
  const counts = {} as RefusalCounts
  for (const r of REFUSAL_REASONS) counts[r] = 0
  return counts
}
