import type { HostPort } from '../address/index.js'

export type Protocol = 'tcp' | 'udp'
export type HashKey = 'src-ip' | 'src-ip-port'
export type ProxyProtocolVersion = 'none' | 'v1' | 'v2'
import type { CheckType } from '../health/options.js'

export type { CheckType }
export type LogFormat = 'json' | 'pretty'
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
export type OnDown = 'keep' | 'shutdown'

export interface BackendConfig {
  /** Canonical `host:port` as configured; the name hashing algorithms hash. */
  readonly name: string
  readonly host: string
  readonly port: number
  readonly family: 0 | 4 | 6
  readonly weight: number
  readonly backup: boolean
  readonly checkPort: number | undefined
  /** `srv:_service._proto.name`: expands at load and on every refresh to the SRV answer's targets. */
  readonly srv: boolean
}

export interface HealthConfig {
  readonly type: CheckType
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly rise: number
  readonly fall: number
  readonly fastIntervalMs: number | undefined
  readonly downIntervalMs: number | undefined
  readonly port: number | undefined
  readonly send: Buffer | undefined
  readonly expect: readonly Buffer[] | undefined
  readonly httpPath: string
  readonly httpStatus: string
  readonly sendProxy: boolean
  /** Off when undefined; see README "Flap damping". */
  readonly flapDamping: { readonly maxTransitions: number; readonly windowMs: number; readonly holdMs: number } | undefined
}

export interface ServiceConfig {
  readonly name: string
  readonly listen: readonly HostPort[]
  readonly protocols: readonly Protocol[]
  readonly balance: string
  readonly hashKey: HashKey
  readonly proxyProtocol: ProxyProtocolVersion
  /** CIDR blocks whose PROXY headers are believed; empty = accept-proxy off. */
  readonly acceptProxy: readonly string[]
  /** Refuse (instead of serving as plain TCP) connections from sources outside acceptProxy. */
  readonly acceptProxyStrict: boolean
  /** Whole-header deadline for an accepted PROXY header. */
  readonly acceptProxyTimeoutMs: number
  /** Largest v2 length field (bytes after the 16-byte fixed header) an accepted header may declare. */
  readonly acceptProxyMaxLength: number
  /** Append a PP2_TYPE_CRC32C TLV to sent v2 headers. */
  readonly proxyV2Crc32c: boolean
  /** Pass TLVs of an accepted v2 header that l4lb does not produce itself on in the sent one. */
  readonly proxyForwardTlvs: boolean
  /** UDP: send the v2 header on a session's first datagram only (default: on every datagram, as the spec has it). */
  readonly proxyUdpFirstOnly: boolean
  readonly connectTimeoutMs: number
  /** 0 = no idle timeout. */
  readonly idleTimeoutMs: number
  readonly retries: number
  /** 0 = unlimited. */
  readonly maxConns: number
  readonly drainTimeoutMs: number
  readonly onDown: OnDown
  readonly backlog: number
  readonly reusePort: boolean
  readonly health: HealthConfig
  readonly backends: readonly BackendConfig[]
  /** How often hostnames and SRV names are re-resolved; 0 = only at load. */
  readonly resolveIntervalMs: number
  // --- UDP (lib/udp) ---
  /** A session with no datagram either way for this long ends (one sweep per service). */
  readonly udpIdleTimeoutMs: number
  /** Replies expected per client datagram before the session ends (nginx proxy_responses); 0 = unlimited. */
  readonly udpResponses: number
  /** Sessions per service; new flows beyond it are dropped and counted. */
  readonly udpMaxSessions: number
  /** SO_RCVBUF / SO_SNDBUF asked for on UDP listening sockets. */
  readonly udpBufferBytes: number
  /** Keep sessions on a backend marked down until idle (stateful game servers) instead of moving them. */
  readonly udpKeepOnDown: boolean
}

export interface LogConfig {
  readonly level: LogLevel
  readonly format: LogFormat
}

export interface AdminConfig {
  /** `host:port` or a unix socket path (contains "/"). */
  readonly listen: string
  /** File holding a bearer token every request must present; undefined = no token. */
  readonly tokenFile: string | undefined
}

/** Which data plane carries TCP services (README "Data planes"); `auto` = native where it can. */
export type DataPlaneName = 'auto' | 'native' | 'node'

export interface Config {
  readonly services: readonly ServiceConfig[]
  readonly dataPlane: DataPlaneName
  /** Native plane engine threads; 0 = one per CPU. */
  readonly threads: number
  readonly log: LogConfig
  /** Undefined = no admin endpoint (the default). */
  readonly admin: AdminConfig | undefined
  /** DNS servers (`host:port`) for backend names; empty = the system resolver (getaddrinfo). */
  readonly resolvers: readonly string[]
}
