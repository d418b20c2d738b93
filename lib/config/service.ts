/**
 * Validation of one service, shared by flags and the YAML file: both produce the same raw shape
 * (camelCase keys, strings where the user typed text), and every error names the key as the user
 * wrote it (`--connect-timeout` or `services[0].connectTimeout`) with the value.
 */
import { parseHostPort, parsePort, CidrList, formatHostPort, type HostPort } from '../address/index.js'
import { algorithmNames, isBalanceName, MAX_WEIGHT } from '../balance/index.js'
import { ConfigError, L4lbError } from '../errors.js'
import { DEFAULTS } from './defaults.js'
import { parseDuration } from './duration.js'
import { MAX_UDP_BUFFER_BYTES, MIN_UDP_BUFFER_BYTES, parseSize } from './size.js'
import { CHECK_TYPES } from '../health/options.js'
import type { BackendConfig, HashKey, HealthConfig, OnDown, Protocol, ProxyProtocolVersion, ServiceConfig } from './types.js'

export type Path = readonly (string | number)[]
/** Turns a path inside the raw config into the key name the user knows. */
export type KeyNamer = (path: Path) => string

type Raw = Record<string, unknown>

export const SERVICE_KEYS = [
  'name', 'listen', 'protocol', 'balance', 'hashKey', 'proxyProtocol', 'acceptProxy', 'acceptProxyStrict',
  'acceptProxyTimeout', 'acceptProxyMaxLength', 'proxyV2Crc32c', 'proxyForwardTlvs', 'proxyUdpFirstOnly', 'connectTimeout',
  'idleTimeout', 'retries', 'maxConns', 'drainTimeout', 'onDown', 'backlog', 'reusePort', 'health', 'backends',
  'resolveInterval',
  'udpIdleTimeout', 'udpResponses', 'udpMaxSessions', 'udpBuffer', 'udpKeepOnDown',
] as const
export const HEALTH_KEYS = [
  'type', 'interval', 'timeout', 'rise', 'fall', 'fastInterval', 'downInterval', 'port', 'send', 'expect',
  'httpPath', 'httpStatus', 'sendProxy', 'flapDamping',
] as const
export const BACKEND_KEYS = ['address', 'weight', 'backup', 'checkPort'] as const

const PROTOCOLS: Record<string, readonly Protocol[]> = { tcp: ['tcp'], udp: ['udp'], 'tcp,udp': ['tcp', 'udp'], 'udp,tcp': ['tcp', 'udp'] }
const HASH_KEYS: readonly HashKey[] = ['src-ip', 'src-ip-port']
const PROXY_VERSIONS: readonly ProxyProtocolVersion[] = ['none', 'v1', 'v2']
const ON_DOWN: readonly OnDown[] = ['keep', 'shutdown']

/** Collects problems so `l4lb check` can print all of them; flags print the first. */
export class Problems {
  readonly list: ConfigError[] = []
  constructor(readonly keyOf: KeyNamer) {}
  add(path: Path, value: unknown, problem: string): undefined {
    this.list.push(new ConfigError(this.keyOf(path), value, problem, path))
    return undefined
  }
}

export function checkUnknownKeys(raw: Raw, known: readonly string[], path: Path, problems: Problems): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      const near = known.find((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2)
      problems.add([...path, key], undefined, near ? `unknown key (did you mean "${near}"?)` : `unknown key (known: ${known.join(', ')})`)
    }
  }
}

/** Levenshtein distance, for "did you mean" on mistyped keys. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}

function oneOf<T extends string>(raw: unknown, choices: readonly T[], fallback: T, path: Path, problems: Problems): T {
  if (raw === undefined || raw === null) return fallback
  if (typeof raw === 'string' && (choices as readonly string[]).includes(raw)) return raw as T
  return problems.add(path, raw, `must be one of ${choices.join(', ')}`) ?? fallback
}

function duration(raw: unknown, fallback: number, path: Path, problems: Problems): number {
  if (raw === undefined || raw === null) return fallback
  if (raw === 0) return 0
  if (typeof raw !== 'string') return problems.add(path, raw, 'must be a duration with a unit, e.g. "5s"') ?? fallback
  const ms = parseDuration(raw)
  return typeof ms === 'number' ? ms : (problems.add(path, raw, ms) ?? fallback)
}

function integer(raw: unknown, fallback: number, min: number, max: number, path: Path, problems: Problems): number {
  if (raw === undefined || raw === null) return fallback
  const n = typeof raw === 'string' && /^-?[0-9]+$/.test(raw.trim()) ? Number(raw) : raw
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    return problems.add(path, raw, `must be a whole number from ${min} to ${max}`) ?? fallback
  }
  return n
}

function size(raw: unknown, fallback: number, min: number, max: number, path: Path, problems: Problems): number {
  if (raw === undefined || raw === null) return fallback
  if (typeof raw !== 'string' && typeof raw !== 'number') return problems.add(path, raw, 'must be a size, e.g. "4MiB", "512KiB" or bytes') ?? fallback
  const n = parseSize(String(raw))
  if (typeof n === 'string') return problems.add(path, raw, n) ?? fallback
  if (n < min || n > max) return problems.add(path, raw, `must be from ${min} to ${max} bytes`) ?? fallback
  return n
}

function boolean(raw: unknown, fallback: boolean, path: Path, problems: Problems): boolean {
  if (raw === undefined || raw === null) return fallback
  if (typeof raw === 'boolean') return raw
  if (raw === 'true') return true
  if (raw === 'false') return false
  return problems.add(path, raw, 'must be true or false') ?? fallback
}

function list(raw: unknown): unknown[] {
  if (raw === undefined || raw === null) return []
  return Array.isArray(raw) ? raw : [raw]
}

function port(raw: unknown, path: Path, problems: Problems): number | undefined {
  if (raw === undefined || raw === null) return undefined
  try {
    return parsePort(String(raw))
  } catch {
    return problems.add(path, raw, 'port must be 1-65535')
  }
}

/**
 * Check payloads: `0x0000000804d2162f` is hex; anything else is text with \r \n \t \0 \xHH escapes.
 */
export function parseBytes(text: string): Buffer | string {
  if (/^0x/i.test(text)) {
    const hex = text.slice(2)
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(hex)) return 'hex needs an even number of 0-9a-f digits after 0x'
    return Buffer.from(hex, 'hex')
  }
  const out = text.replace(/\\(x[0-9a-fA-F]{2}|[rnt0\\])/g, (_, esc: string) => {
    if (esc[0] === 'x') return String.fromCharCode(parseInt(esc.slice(1), 16))
    return ({ r: '\r', n: '\n', t: '\t', '0': '\0', '\\': '\\' } as Record<string, string>)[esc]!
  })
  return Buffer.from(out, 'latin1')
}

function bytes(raw: unknown, path: Path, problems: Problems): Buffer | undefined {
  if (raw === undefined || raw === null) return undefined
  if (typeof raw !== 'string' || raw === '') return problems.add(path, raw, 'must be a non-empty string or 0x-prefixed hex')
  const b = parseBytes(raw)
  return typeof b === 'string' ? problems.add(path, raw, b) : b
}

function listenAddress(raw: unknown, path: Path, problems: Problems): HostPort | undefined {
  if (typeof raw !== 'string') return problems.add(path, raw, 'must be "[host]:port"')
  try {
    const hp = parseHostPort(raw.trim(), '::', true)
    if (hp.family === 0 && hp.host !== 'localhost') return problems.add(path, raw, 'listen on an IP address (or ":port" for all)')
    return hp.family === 0 ? { host: '127.0.0.1', port: hp.port, family: 4 } : hp
  } catch (err) {
    // `-l 28210` is the most common slip: say how to write a port alone (issue 16).
    const hint = /^[0-9]{1,5}$/.test(raw.trim()) ? ` (to listen on port ${raw.trim()} on every address, write ":${raw.trim()}")` : ''
    return problems.add(path, raw, problemOf(err) + hint)
  }
}

function problemOf(err: unknown): string {
  if (err instanceof L4lbError) return err.message.replace(/^"[^"]*": /, '')
  return String(err)
}

/** `host:port[,weight=N][,backup][,check-port=N]`, the flag form of a backend. */
export function parseBackendSpec(text: string): Raw | string {
  const [address, ...opts] = text.split(',').map((s) => s.trim())
  const out: Raw = { address }
  for (const opt of opts) {
    const [k, v] = opt.split('=', 2) as [string, string | undefined]
    if (k === 'backup' && v === undefined) out.backup = true
    else if (k === 'weight' && v !== undefined) out.weight = v
    else if ((k === 'check-port' || k === 'checkPort') && v !== undefined) out.checkPort = v
    else return `unknown backend option "${opt}" (use weight=N, backup, check-port=N)`
  }
  return out
}

function backend(raw: unknown, path: Path, problems: Problems): BackendConfig | undefined {
  let spec: Raw
  if (typeof raw === 'string') {
    const parsed = parseBackendSpec(raw)
    if (typeof parsed === 'string') return problems.add(path, raw, parsed)
    spec = parsed
  } else if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    spec = raw as Raw
    checkUnknownKeys(spec, BACKEND_KEYS, path, problems)
  } else {
    return problems.add(path, raw, 'must be "host:port" or {address, weight, backup, checkPort}')
  }
  const addressPath = typeof raw === 'string' ? path : [...path, 'address']
  const addressText = spec.address
  if (typeof addressText !== 'string' || addressText === '') return problems.add(addressPath, addressText ?? raw, 'backend address must be "host:port"')
  if (addressText.startsWith('srv:')) return srvBackend(addressText, spec, path, addressPath, raw, problems)
  let hp: HostPort
  try {
    hp = parseHostPort(addressText)
  } catch (err) {
    return problems.add(addressPath, typeof raw === 'string' ? raw : addressText, problemOf(err))
  }
  // In the flag form the user typed one string: errors quote all of it, not the piece inside.
  const sub = typeof raw === 'string' ? new Problems(problems.keyOf) : problems
  const at = (key: string): Path => (typeof raw === 'string' ? path : [...path, key])
  const config: BackendConfig = {
    name: formatHostPort(hp.host, hp.port),
    host: hp.host,
    port: hp.port,
    family: hp.family,
    weight: integer(spec.weight, DEFAULTS.weight, 1, MAX_WEIGHT, at('weight'), sub),
    backup: boolean(spec.backup, false, at('backup'), sub),
    checkPort: port(spec.checkPort, at('checkPort'), sub),
    srv: false,
  }
  if (sub !== problems) for (const e of sub.list) problems.add(path, raw, e.problem)
  return config
}

/** `srv:_postgresql._tcp.example.com`: ports and weights come from the SRV records. */
function srvBackend(text: string, spec: Raw, path: Path, addressPath: Path, raw: unknown, problems: Problems): BackendConfig | undefined {
  const name = text.slice(4).toLowerCase()
  if (!/^_[a-z0-9-]+\._(tcp|udp)\.[a-z0-9_.-]+$/.test(name)) return problems.add(addressPath, typeof raw === 'string' ? raw : text, 'SRV backends look like "srv:_service._tcp.example.com"')
  if (spec.weight !== undefined) problems.add(typeof raw === 'string' ? path : [...path, 'weight'], raw, 'an SRV backend takes its weights from the SRV records')
  return {
    name: text.toLowerCase(),
    host: name,
    port: 0,
    family: 0,
    weight: DEFAULTS.weight,
    backup: boolean(spec.backup, false, typeof raw === 'string' ? path : [...path, 'backup'], problems),
    checkPort: port(spec.checkPort, typeof raw === 'string' ? path : [...path, 'checkPort'], problems),
    srv: true,
  }
}

function health(raw: unknown, path: Path, problems: Problems): HealthConfig {
  const h: Raw = raw && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Raw) : {}
  if (raw !== undefined && raw !== null && h !== raw) problems.add(path, raw, 'must be a mapping')
  checkUnknownKeys(h, HEALTH_KEYS, path, problems)
  const d = DEFAULTS.health
  const type = oneOf(h.type, CHECK_TYPES, d.type, [...path, 'type'], problems)
  const send = bytes(h.send, [...path, 'send'], problems)
  const expectList = list(h.expect).map((e, i) => bytes(e, Array.isArray(h.expect) ? [...path, 'expect', i] : [...path, 'expect'], problems))
  const expect = expectList.filter((b): b is Buffer => b !== undefined)
  if (type === 'udp' && send === undefined) problems.add([...path, 'send'], h.send, 'a udp check needs bytes to send')
  if (type === 'send-expect' && expect.length === 0) problems.add([...path, 'expect'], h.expect, 'a send-expect check needs at least one expected reply')
  const httpPath = typeof h.httpPath === 'string' ? h.httpPath : d.httpPath
  if (!httpPath.startsWith('/')) problems.add([...path, 'httpPath'], h.httpPath, 'must start with "/"')
  const httpStatus = typeof h.httpStatus === 'string' || typeof h.httpStatus === 'number' ? String(h.httpStatus) : d.httpStatus
  if (!/^([1-5]xx|[1-5][0-9]{2})(,([1-5]xx|[1-5][0-9]{2}))*$/.test(httpStatus)) {
    problems.add([...path, 'httpStatus'], h.httpStatus, 'must be a status like 200, 2xx or 200,204')
  }
  const intervalMs = duration(h.interval, d.intervalMs, [...path, 'interval'], problems)
  if (intervalMs < 10 && type !== 'none') problems.add([...path, 'interval'], h.interval, 'must be at least 10ms')
  const timeoutMs = duration(h.timeout, d.timeoutMs, [...path, 'timeout'], problems)
  if (timeoutMs < 1 && type !== 'none') problems.add([...path, 'timeout'], h.timeout, 'must be more than 0')
  return {
    type,
    intervalMs,
    timeoutMs,
    rise: integer(h.rise, d.rise, 1, 100, [...path, 'rise'], problems),
    fall: integer(h.fall, d.fall, 1, 100, [...path, 'fall'], problems),
    fastIntervalMs: h.fastInterval === undefined ? undefined : duration(h.fastInterval, 0, [...path, 'fastInterval'], problems),
    downIntervalMs: h.downInterval === undefined ? undefined : duration(h.downInterval, 0, [...path, 'downInterval'], problems),
    port: port(h.port, [...path, 'port'], problems),
    send,
    expect: expect.length > 0 ? expect : undefined,
    httpPath,
    httpStatus,
    sendProxy: boolean(h.sendProxy, false, [...path, 'sendProxy'], problems),
    flapDamping: flapDamping(h.flapDamping, [...path, 'flapDamping'], problems),
  }
}

/** `"4/60s/30s"`: more than 4 up/down changes within 60s → stay passing 30s before coming up. */
function flapDamping(raw: unknown, path: Path, problems: Problems): HealthConfig['flapDamping'] {
  if (raw === undefined || raw === null || raw === false || raw === 'off') return undefined
  const parts = typeof raw === 'string' ? raw.split('/') : []
  if (parts.length !== 3) return problems.add(path, raw, 'must be "TRANSITIONS/WINDOW/HOLD", e.g. "4/60s/30s"')
  const maxTransitions = integer(parts[0], 4, 1, 1000, path, problems)
  const windowMs = parseDuration(parts[1]!)
  const holdMs = parseDuration(parts[2]!)
  if (typeof windowMs !== 'number' || windowMs <= 0) return problems.add(path, raw, `window ${JSON.stringify(parts[1])}: ${typeof windowMs === 'string' ? windowMs : 'must be more than 0'}`)
  if (typeof holdMs !== 'number') return problems.add(path, raw, `hold ${JSON.stringify(parts[2])}: ${holdMs}`)
  return { maxTransitions, windowMs, holdMs }
}

function udp(s: Raw, at: (key: string) => Path, problems: Problems): Pick<ServiceConfig, 'udpIdleTimeoutMs' | 'udpResponses' | 'udpMaxSessions' | 'udpBufferBytes' | 'udpKeepOnDown'> {
  const udpIdleTimeoutMs = duration(s.udpIdleTimeout, DEFAULTS.udpIdleTimeoutMs, at('udpIdleTimeout'), problems)
  // A session that never idles out would hold a socket per client port forever.
  if (udpIdleTimeoutMs < 10) problems.add(at('udpIdleTimeout'), s.udpIdleTimeout, 'must be at least 10ms')
  return {
    udpIdleTimeoutMs,
    udpResponses: integer(s.udpResponses, DEFAULTS.udpResponses, 0, 1_000_000, at('udpResponses'), problems),
    udpMaxSessions: integer(s.udpMaxSessions, DEFAULTS.udpMaxSessions, 1, 10_000_000, at('udpMaxSessions'), problems),
    udpBufferBytes: size(s.udpBuffer, DEFAULTS.udpBufferBytes, MIN_UDP_BUFFER_BYTES, MAX_UDP_BUFFER_BYTES, at('udpBuffer'), problems),
    udpKeepOnDown: boolean(s.udpKeepOnDown, DEFAULTS.udpKeepOnDown, at('udpKeepOnDown'), problems),
  }
}

export function validateService(raw: unknown, path: Path, fallbackName: string, problems: Problems): ServiceConfig | undefined {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return problems.add(path, raw, 'a service must be a mapping')
  const s = raw as Raw
  checkUnknownKeys(s, SERVICE_KEYS, path, problems)
  const at = (key: string): Path => [...path, key]

  const name = s.name === undefined ? fallbackName : s.name
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) problems.add(at('name'), s.name, 'must be 1-64 letters, digits, "_", "." or "-"')

  const listenRaw = list(s.listen)
  if (listenRaw.length === 0) problems.add(at('listen'), undefined, 'at least one listen address is required')
  const listen = listenRaw
    .map((l, i) => listenAddress(l, Array.isArray(s.listen) ? [...at('listen'), i] : at('listen'), problems))
    .filter((l): l is HostPort => l !== undefined)

  const protocolText = s.protocol === undefined ? DEFAULTS.protocol : String(s.protocol).replace(/\s+/g, '')
  const protocols = PROTOCOLS[protocolText] ?? (problems.add(at('protocol'), s.protocol, 'must be tcp, udp or tcp,udp') ?? ['tcp' as const])

  const balance = s.balance === undefined ? DEFAULTS.balance : s.balance
  if (typeof balance !== 'string' || !isBalanceName(balance)) problems.add(at('balance'), s.balance, `must be one of ${algorithmNames.join(', ')}`)

  const acceptProxy = list(s.acceptProxy).map(String).flatMap((c) => c.split(',')).map((c) => c.trim()).filter((c) => c !== '')
  for (const cidr of acceptProxy) {
    try {
      new CidrList([cidr])
    } catch (err) {
      problems.add(at('acceptProxy'), cidr, problemOf(err))
    }
  }

  const proxyRaw = s.proxyProtocol === false ? 'none' : s.proxyProtocol
  const proxyProtocol = oneOf(proxyRaw, PROXY_VERSIONS, DEFAULTS.proxyProtocol, at('proxyProtocol'), problems)
  const acceptProxyStrict = boolean(s.acceptProxyStrict, false, at('acceptProxyStrict'), problems)
  if (acceptProxyStrict && acceptProxy.length === 0) problems.add(at('acceptProxyStrict'), s.acceptProxyStrict, 'needs acceptProxy (the CIDRs whose PROXY headers are trusted)')
  const acceptProxyTimeoutMs = duration(s.acceptProxyTimeout, DEFAULTS.acceptProxyTimeoutMs, at('acceptProxyTimeout'), problems)
  if (acceptProxyTimeoutMs < 1) problems.add(at('acceptProxyTimeout'), s.acceptProxyTimeout, 'must be more than 0')
  // 216 bytes is the largest address block (AF_UNIX); a smaller cap would refuse valid headers.
  const acceptProxyMaxLength = integer(s.acceptProxyMaxLength, DEFAULTS.acceptProxyMaxLength, 216, 65535, at('acceptProxyMaxLength'), problems)
  const proxyV2Crc32c = boolean(s.proxyV2Crc32c, false, at('proxyV2Crc32c'), problems)
  if (proxyV2Crc32c && proxyProtocol !== 'v2') problems.add(at('proxyV2Crc32c'), s.proxyV2Crc32c, 'only applies with proxyProtocol v2')
  const proxyForwardTlvs = boolean(s.proxyForwardTlvs, false, at('proxyForwardTlvs'), problems)
  if (proxyForwardTlvs && (proxyProtocol !== 'v2' || acceptProxy.length === 0)) {
    problems.add(at('proxyForwardTlvs'), s.proxyForwardTlvs, 'only applies with proxyProtocol v2 and acceptProxy')
  }
  const proxyUdpFirstOnly = boolean(s.proxyUdpFirstOnly, false, at('proxyUdpFirstOnly'), problems)
  if (proxyUdpFirstOnly && proxyProtocol !== 'v2') problems.add(at('proxyUdpFirstOnly'), s.proxyUdpFirstOnly, 'only applies with proxyProtocol v2')
  if (proxyProtocol === 'v1' && protocols.includes('udp')) problems.add(at('proxyProtocol'), proxyRaw, 'PROXY v1 has no datagram form: use v2 for udp')
  const backendsRaw = list(s.backends)
  if (backendsRaw.length === 0) problems.add(at('backends'), undefined, 'at least one backend is required')
  const backends = backendsRaw
    .map((b, i) => backend(b, Array.isArray(s.backends) ? [...at('backends'), i] : at('backends'), problems))
    .filter((b): b is BackendConfig => b !== undefined)
  const seen = new Set<string>()
  backends.forEach((b, i) => {
    if (seen.has(b.name)) problems.add(Array.isArray(s.backends) ? [...at('backends'), i] : at('backends'), b.name, 'duplicate backend')
    seen.add(b.name)
  })
  if (backends.length > 0 && backends.every((b) => b.backup)) problems.add(at('backends'), undefined, 'at least one backend must not be a backup')

  return {
    name: typeof name === 'string' ? name : fallbackName,
    listen,
    protocols,
    balance: typeof balance === 'string' ? balance : DEFAULTS.balance,
    hashKey: oneOf(s.hashKey, HASH_KEYS, DEFAULTS.hashKey, at('hashKey'), problems),
    proxyProtocol,
    acceptProxy,
    acceptProxyStrict,
    acceptProxyTimeoutMs,
    acceptProxyMaxLength,
    proxyV2Crc32c,
    proxyForwardTlvs,
    proxyUdpFirstOnly,
    connectTimeoutMs: duration(s.connectTimeout, DEFAULTS.connectTimeoutMs, at('connectTimeout'), problems) || (problems.add(at('connectTimeout'), s.connectTimeout, 'must be more than 0') ?? DEFAULTS.connectTimeoutMs),
    idleTimeoutMs: duration(s.idleTimeout, DEFAULTS.idleTimeoutMs, at('idleTimeout'), problems),
    retries: integer(s.retries, DEFAULTS.retries, 0, 16, at('retries'), problems),
    maxConns: integer(s.maxConns, DEFAULTS.maxConns, 0, 10_000_000, at('maxConns'), problems),
    drainTimeoutMs: duration(s.drainTimeout, DEFAULTS.drainTimeoutMs, at('drainTimeout'), problems),
    onDown: oneOf(s.onDown, ON_DOWN, DEFAULTS.onDown, at('onDown'), problems),
    backlog: integer(s.backlog, DEFAULTS.backlog, 1, 65535, at('backlog'), problems),
    reusePort: boolean(s.reusePort, false, at('reusePort'), problems),
    health: health(s.health, at('health'), problems),
    backends,
    resolveIntervalMs: duration(s.resolveInterval, DEFAULTS.resolveIntervalMs, at('resolveInterval'), problems),
    ...udp(s, at, problems),
  }
}
