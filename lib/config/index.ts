/**
 * Flags (and, later, the YAML file) → one validated, typed `Config`. Nothing here opens a socket.
 */
import { isIP } from 'node:net'
import { formatHostPort, parseHostPort } from '../address/index.js'
import type { ConfigError } from '../errors.js'
import { DEFAULTS } from './defaults.js'
import { checkUnknownKeys, Problems, validateService, type Path } from './service.js'
import type { AdminConfig, Config, DataPlaneName, LogFormat, LogLevel, ServiceConfig } from './types.js'

export * from './types.js'
export { DEFAULTS } from './defaults.js'
export { parseDuration } from './duration.js'
export { parseSize, formatSize } from './size.js'
export { Problems, validateService, parseBytes, parseBackendSpec, type Path, type KeyNamer } from './service.js'

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty']
const DATA_PLANE_NAMES: readonly DataPlaneName[] = ['auto', 'native', 'node']

/** Flag names for config paths, so flag errors name the flag the user typed. */
const FLAG_OF: Record<string, string> = {
  listen: '--listen', backends: '--backend', protocol: '--protocol', balance: '--balance', hashKey: '--hash-key',
  proxyProtocol: '--proxy-protocol', acceptProxy: '--accept-proxy', acceptProxyStrict: '--accept-proxy-strict',
  acceptProxyTimeout: '--accept-proxy-timeout', acceptProxyMaxLength: '--accept-proxy-max-length',
  proxyV2Crc32c: '--proxy-v2-crc32c', proxyForwardTlvs: '--proxy-forward-tlvs', proxyUdpFirstOnly: '--proxy-udp-first-only', connectTimeout: '--connect-timeout',
  idleTimeout: '--idle-timeout', retries: '--retries', maxConns: '--max-conns', drainTimeout: '--drain-timeout',
  onDown: '--on-down', backlog: '--backlog', reusePort: '--reuse-port', name: '--name', admin: '--admin',
  'health.type': '--check', 'health.interval': '--check-interval', 'health.timeout': '--check-timeout',
  'health.rise': '--rise', 'health.fall': '--fall', 'health.port': '--check-port', 'health.send': '--check-send',
  'health.expect': '--check-expect', 'health.httpPath': '--check-http-path', 'health.httpStatus': '--check-http-status',
  'health.fastInterval': '--fast-interval', 'health.downInterval': '--down-interval', 'health.sendProxy': '--check-send-proxy', 'health.flapDamping': '--flap-damping',
  'log.level': '--log-level', 'log.format': '--log-format', 'admin.listen': '--admin', 'admin.tokenFile': '--admin-token-file',
  resolveInterval: '--resolve-interval', resolvers: '--resolver', dataPlane: '--data-plane', threads: '--threads',
  udpIdleTimeout: '--udp-idle-timeout', udpResponses: '--udp-responses', udpMaxSessions: '--udp-max-sessions',
  udpBuffer: '--udp-buffer', udpKeepOnDown: '--udp-keep-sessions',
}

export function flagName(path: Path): string {
  const words = path.filter((p): p is string => typeof p === 'string')
  for (let n = words.length; n > 0; n--) {
    const flag = FLAG_OF[words.slice(0, n).join('.')]
    if (flag) return flag
  }
  return words.join('.')
}

/** `services[0].backends[1].address`, the name of a key in the YAML file. */
export function yamlKeyName(path: Path): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`
  return out
}

export class ConfigErrors extends Error {
  constructor(readonly errors: readonly ConfigError[]) {
    super(errors.map((e) => e.message).join('\n'))
    this.name = 'ConfigErrors'
  }
}

export interface RawConfig {
  services?: unknown
  admin?: unknown
  log?: unknown
  resolvers?: unknown
  dataPlane?: unknown
  threads?: unknown
}

/**
 * Validates a whole raw config. Returns the Config or throws ConfigErrors listing every problem.
 * `keyOf` chooses how keys are named in messages (flags or YAML paths).
 */
export function validateConfig(raw: RawConfig, keyOf: (path: Path) => string, fallbackName = 'default'): Config {
  const problems = new Problems(keyOf)
  const servicesRaw = Array.isArray(raw.services) ? raw.services : []
  if (!Array.isArray(raw.services) || servicesRaw.length === 0) problems.add(['services'], undefined, 'at least one service is required')
  const services = servicesRaw
    .map((s, i) => validateService(s, pathFor(raw, i), servicesRaw.length > 1 ? `${fallbackName}${i}` : fallbackName, problems))
    .filter((s): s is ServiceConfig => s !== undefined)
  checkDuplicates(services, problems, raw)

  const log = (raw.log && typeof raw.log === 'object' ? raw.log : {}) as Record<string, unknown>
  const level = log.level ?? DEFAULTS.log.level
  if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) problems.add(['log', 'level'], log.level, `must be one of ${LOG_LEVELS.join(', ')}`)
  const format = log.format ?? DEFAULTS.log.format
  if (typeof format !== 'string' || !(LOG_FORMATS as readonly string[]).includes(format)) problems.add(['log', 'format'], log.format, `must be one of ${LOG_FORMATS.join(', ')}`)

  const admin = adminConfig(raw.admin, problems)
  const resolverList = Array.isArray(raw.resolvers) ? raw.resolvers : raw.resolvers === undefined ? [] : [raw.resolvers]
  const resolvers = resolverList.map((r, i) => resolverAddress(r) ?? problems.add(Array.isArray(raw.resolvers) ? ['resolvers', i] : ['resolvers'], r, 'must be an IP address with an optional port, e.g. "127.0.0.1" or "[::1]:53"') ?? '')

  const dataPlane = raw.dataPlane ?? DEFAULTS.dataPlane
  if (typeof dataPlane !== 'string' || !(DATA_PLANE_NAMES as readonly string[]).includes(dataPlane)) problems.add(['dataPlane'], raw.dataPlane, `must be one of ${DATA_PLANE_NAMES.join(', ')}`)
  const threadsRaw = raw.threads ?? DEFAULTS.threads
  const threads = typeof threadsRaw === 'string' && /^\d+$/.test(threadsRaw) ? Number(threadsRaw) : threadsRaw
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 0 || threads > 256) problems.add(['threads'], raw.threads, 'must be an integer 0-256 (0 = one per CPU)')
  if (problems.list.length > 0) throw new ConfigErrors(problems.list)
  return {
    services, log: { level: level as LogLevel, format: format as LogFormat }, admin, resolvers,
    dataPlane: dataPlane as DataPlaneName, threads: threads as number,
  }
}

/** A DNS server: an IP literal, with `:port` (default 53). */
function resolverAddress(raw: unknown): string | undefined {
  const text = String(raw)
  if (isIP(text)) return formatHostPort(text, 53)
  try {
    const hp = parseHostPort(text)
    return hp.family === 0 ? undefined : formatHostPort(hp.host, hp.port)
  } catch {
    return undefined
  }
}

const ADMIN_KEYS = ['listen', 'tokenFile']

function adminConfig(raw: unknown, problems: Problems): AdminConfig | undefined {
  if (raw === undefined || raw === null || raw === false) return undefined
  const spec = typeof raw === 'string' ? { listen: raw } : raw
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return problems.add(['admin'], raw, 'must be "host:port", a unix socket path, or {listen, tokenFile}')
  const o = spec as Record<string, unknown>
  checkUnknownKeys(o, ADMIN_KEYS, ['admin'], problems)
  const listenPath: Path = typeof raw === 'string' ? ['admin'] : ['admin', 'listen']
  const listen = o.listen
  if (typeof listen !== 'string' || listen === '') return problems.add(listenPath, listen, 'must be "host:port" or a unix socket path')
  if (!listen.includes('/')) {
    try {
      parseHostPort(listen, '127.0.0.1', true)
    } catch {
      return problems.add(listenPath, listen, 'must be "host:port" (e.g. 127.0.0.1:9090) or a unix socket path')
    }
  }
  const tokenFile = o.tokenFile
  if (tokenFile !== undefined && (typeof tokenFile !== 'string' || tokenFile === '')) return problems.add(['admin', 'tokenFile'], tokenFile, 'must be a file path')
  return { listen, tokenFile: tokenFile as string | undefined }
}

function pathFor(raw: RawConfig, i: number): Path {
  // A config built from flags has exactly one service whose keys are flags, not `services[0]`.
  return (raw as { fromFlags?: boolean }).fromFlags ? [] : ['services', i]
}

function checkDuplicates(services: readonly ServiceConfig[], problems: Problems, raw: RawConfig): void {
  const names = new Set<string>()
  const bound = new Map<string, string>()
  services.forEach((service, i) => {
    const base = pathFor(raw, i)
    if (names.has(service.name)) problems.add([...base, 'name'], service.name, 'duplicate service name')
    names.add(service.name)
    service.listen.forEach((l, j) => {
      for (const protocol of service.protocols) {
        const key = `${protocol}/${formatHostPort(l.host, l.port)}`
        const other = bound.get(key)
        if (other !== undefined) problems.add([...base, 'listen', j], formatHostPort(l.host, l.port), `duplicate listen address (${protocol}, also in service ${other})`)
        bound.set(key, service.name)
      }
    })
  })
}

/** The raw shape the CLI's flags produce for its single service. */
export interface FlagValues {
  listen?: string[]
  backend?: string[]
  protocol?: string
  balance?: string
  hashKey?: string
  proxyProtocol?: string
  acceptProxy?: string[]
  acceptProxyStrict?: boolean
  acceptProxyTimeout?: string
  acceptProxyMaxLength?: string
  proxyV2Crc32c?: boolean
  proxyForwardTlvs?: boolean
  proxyUdpFirstOnly?: boolean
  connectTimeout?: string
  idleTimeout?: string
  retries?: string
  maxConns?: string
  drainTimeout?: string
  onDown?: string
  backlog?: string
  reusePort?: boolean
  name?: string
  check?: string
  checkInterval?: string
  checkTimeout?: string
  rise?: string
  fall?: string
  checkPort?: string
  checkSend?: string
  checkExpect?: string[]
  checkHttpPath?: string
  checkHttpStatus?: string
  checkSendProxy?: boolean
  flapDamping?: string
  fastInterval?: string
  downInterval?: string
  admin?: string
  adminTokenFile?: string
  config?: string
  resolveInterval?: string
  resolver?: string[]
  logLevel?: string
  logFormat?: string
  udpIdleTimeout?: string
  udpResponses?: string
  udpMaxSessions?: string
  udpBuffer?: string
  udpKeepSessions?: boolean
  dataPlane?: string
  threads?: string
}

export function serviceFromFlags(f: FlagValues): Record<string, unknown> {
  const health: Record<string, unknown> = {
    type: f.check, interval: f.checkInterval, timeout: f.checkTimeout, rise: f.rise, fall: f.fall, port: f.checkPort,
    send: f.checkSend, expect: f.checkExpect, httpPath: f.checkHttpPath, httpStatus: f.checkHttpStatus,
    fastInterval: f.fastInterval, downInterval: f.downInterval, sendProxy: f.checkSendProxy, flapDamping: f.flapDamping,
  }
  const service: Record<string, unknown> = {
    name: f.name, listen: f.listen, backends: f.backend, protocol: f.protocol, balance: f.balance, hashKey: f.hashKey,
    proxyProtocol: f.proxyProtocol, acceptProxy: f.acceptProxy, acceptProxyStrict: f.acceptProxyStrict,
    acceptProxyTimeout: f.acceptProxyTimeout, acceptProxyMaxLength: f.acceptProxyMaxLength,
    proxyV2Crc32c: f.proxyV2Crc32c, proxyForwardTlvs: f.proxyForwardTlvs, proxyUdpFirstOnly: f.proxyUdpFirstOnly, connectTimeout: f.connectTimeout,
    idleTimeout: f.idleTimeout, retries: f.retries, maxConns: f.maxConns, drainTimeout: f.drainTimeout,
    onDown: f.onDown, backlog: f.backlog, reusePort: f.reusePort, health: dropUndefined(health),
    resolveInterval: f.resolveInterval,
    udpIdleTimeout: f.udpIdleTimeout, udpResponses: f.udpResponses, udpMaxSessions: f.udpMaxSessions,
    udpBuffer: f.udpBuffer, udpKeepOnDown: f.udpKeepSessions,
  }
  return dropUndefined(service)
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

function adminFromFlags(f: FlagValues): unknown {
  if (f.admin === undefined) return undefined
  return f.adminTokenFile === undefined ? f.admin : { listen: f.admin, tokenFile: f.adminTokenFile }
}

export function configFromFlags(f: FlagValues): Config {
  const raw = {
    services: [serviceFromFlags(f)], admin: adminFromFlags(f), log: { level: f.logLevel, format: f.logFormat }, resolvers: f.resolver,
    dataPlane: f.dataPlane, threads: f.threads, fromFlags: true,
  }
  return validateConfig(raw, flagName)
}

/**
 * With `-c FILE`, flags override the file: log and admin flags always; service flags only when
 * the file has exactly one service (which service would they mean otherwise?).
 */
export function applyFlagOverrides(raw: RawConfig, f: FlagValues): string | undefined {
  const log = (raw.log && typeof raw.log === 'object' ? raw.log : {}) as Record<string, unknown>
  if (f.logLevel !== undefined) log.level = f.logLevel
  if (f.logFormat !== undefined) log.format = f.logFormat
  raw.log = log
  if (f.admin !== undefined) raw.admin = adminFromFlags(f)
  if (f.resolver !== undefined) raw.resolvers = f.resolver
  if (f.dataPlane !== undefined) raw.dataPlane = f.dataPlane
  if (f.threads !== undefined) raw.threads = f.threads
  const service = serviceFromFlags(f)
  const health = service.health as Record<string, unknown>
  if (Object.keys(health).length === 0) delete service.health
  if (Object.keys(service).length === 0) return undefined
  if (!Array.isArray(raw.services) || raw.services.length !== 1) {
    return `service flags (${Object.keys(service).join(', ')}) need a config file with exactly one service`
  }
  const target = raw.services[0] as Record<string, unknown>
  const { health: healthFlags, ...rest } = service
  Object.assign(target, rest)
  if (healthFlags) target.health = { ...((target.health as object | undefined) ?? {}), ...(healthFlags as object) }
  return undefined
}
