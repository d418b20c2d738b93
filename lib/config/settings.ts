/**
 * Every setting of l4lb, once: its YAML key, its flag, its kind, its default and its help. The
 * validator (service.ts, index.ts), the commander options (lib/cli), the JSON Schema
 * (conf/l4lb.schema.json) and the README's settings table are all read from these rows.
 *
 * To add a setting: add one row to the section it belongs in (SERVICE, HEALTH, BACKEND, LOG,
 * ADMIN or TOP), e.g.
 *     row('queueTimeout', duration(), { default: 0, help: 'how long a connection may wait for a slot' }),
 * Its flag is `--queue-timeout` (say `flag:` only when it must differ), its typed field is
 * `queueTimeoutMs` on ServiceConfig (durations get `Ms`, sizes `Bytes`), its default shows in
 * `--help` and the README by itself. Then read `service.queueTimeoutMs` where it is used, run
 * `npm run build` (regenerates the schema and the README table, which a test keeps current) and
 * write a test. Checks across keys go in the section's `check` (or validateService).
 * (Health rows take their defaults from the prober's CHECK_DEFAULTS, which works on its own.)
 */
import { parseHostPort, formatHostPort } from '../address/index.js'
import { algorithmNames, MAX_WEIGHT, MIN_WEIGHT } from '../balance/index.js'
import { DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_MAX_V2_LENGTH } from '../proxy-protocol/constants.js'
import { CHECK_DEFAULTS, CHECK_TYPES, checks } from '../health/index.js'
import { isIP } from 'node:net'
import { backendsKind } from './backend.js'
import { boolean, bytes, cidrs, custom, duration, integer, list, listenAddress, oneOf, port, size, text } from './kinds.js'
import { parseDuration } from './duration.js'
import { MAX_UDP_BUFFER_BYTES, MIN_UDP_BUFFER_BYTES } from './size.js'
import { row, section, defaultsOf } from './table.js'

export type Protocol = 'tcp' | 'udp'
const PROTOCOL_SETS: Record<string, readonly Protocol[]> = { tcp: ['tcp'], udp: ['udp'], 'tcp,udp': ['tcp', 'udp'], 'udp,tcp': ['tcp', 'udp'] }

const protocols = custom<readonly Protocol[]>({
  name: 'tcp \\| udp \\| tcp,udp',
  arg: '<tcp|udp|tcp,udp>',
  schema: { enum: Object.keys(PROTOCOL_SETS) },
  parse: (raw, at, problems) => PROTOCOL_SETS[String(raw).replace(/\s+/g, '')] ?? problems.add(at, raw, 'must be tcp, udp or tcp,udp'),
  show: (value) => value.join(','),
})

/** `"4/60s/30s"`: more than 4 up/down changes within 60s → stay passing 30s before coming up. */
const flapDamping = custom<{ readonly maxTransitions: number; readonly windowMs: number; readonly holdMs: number } | undefined>({
  name: 'n/window/hold',
  arg: '<n/window/hold>',
  schema: { oneOf: [{ type: 'string', pattern: '^[0-9]+/[^/]+/[^/]+$' }, { const: false }, { const: 'off' }] },
  parse(raw, at, problems) {
    if (raw === false || raw === 'off') return undefined
    const parts = typeof raw === 'string' ? raw.split('/') : []
    if (parts.length !== 3) return problems.add(at, raw, 'must be "TRANSITIONS/WINDOW/HOLD", e.g. "4/60s/30s"')
    const maxTransitions = integer(1, 1000).parse(parts[0], at, problems) ?? 4
    const windowMs = parseDuration(parts[1]!)
    const holdMs = parseDuration(parts[2]!)
    if (typeof windowMs !== 'number' || windowMs <= 0) return problems.add(at, raw, `window ${JSON.stringify(parts[1])}: ${typeof windowMs === 'string' ? windowMs : 'must be more than 0'}`)
    if (typeof holdMs !== 'number') return problems.add(at, raw, `hold ${JSON.stringify(parts[2])}: ${holdMs}`)
    return { maxTransitions, windowMs, holdMs }
  },
  show: () => 'off',
})

/** A DNS server: an IP literal, with `:port` (default 53). */
const resolver = custom<string>({
  name: 'ip[:port]',
  arg: '<ip[:port]>',
  schema: { type: 'string' },
  parse(raw, at, problems) {
    const textValue = String(raw)
    if (isIP(textValue)) return formatHostPort(textValue, 53)
    try {
      const hp = parseHostPort(textValue)
      if (hp.family !== 0) return formatHostPort(hp.host, hp.port)
    } catch {}
    return problems.add(at, raw, 'must be an IP address with an optional port, e.g. "127.0.0.1" or "[::1]:53"')
  },
})

const adminListen = custom<string>({
  name: 'host:port or path',
  arg: '<host:port|path>',
  schema: { type: 'string' },
  parse(raw, at, problems) {
    if (typeof raw !== 'string' || raw === '') return problems.add(at, raw, 'must be "host:port" or a unix socket path')
    if (!raw.includes('/')) {
      try {
        parseHostPort(raw, '127.0.0.1', true)
      } catch {
        return problems.add(at, raw, 'must be "host:port" (e.g. 127.0.0.1:9090) or a unix socket path')
      }
    }
    return raw
  },
})

export const HEALTH = [
  row('type', oneOf(() => CHECK_TYPES), { flag: '--check', default: 'tcp', help: 'health check type (udp sends --check-send, expects --check-expect)' }),
  row('interval', duration(), { flag: '--check-interval', default: CHECK_DEFAULTS.intervalMs, help: 'time between checks' }),
  row('timeout', duration(), { flag: '--check-timeout', default: CHECK_DEFAULTS.timeoutMs, help: 'check timeout' }),
  row('rise', integer(1, 100), { default: CHECK_DEFAULTS.rise, help: 'consecutive passing checks to mark a backend up' }),
  row('fall', integer(1, 100), { default: CHECK_DEFAULTS.fall, help: 'consecutive failing checks to mark a backend down' }),
  row('fastInterval', duration(), { default: undefined, help: 'check interval while a state is changing (HAProxy fastinter)' }),
  row('downInterval', duration(), { default: undefined, help: 'check interval while a backend is down (HAProxy downinter)' }),
  row('port', port(), { flag: '--check-port', default: undefined, help: 'probe this port instead of the service port' }),
  row('send', bytes(), { flag: '--check-send', default: undefined, help: 'send-expect, udp: bytes to send (text with \\r\\n escapes, or 0xHEX)' }),
  row('expect', list(bytes()), { flag: '--check-expect', repeatable: true, default: undefined, help: 'send-expect, udp: expected reply prefix, repeatable for alternatives' }),
  row('httpPath', text({ arg: '<path>' }), { flag: '--check-http-path', default: CHECK_DEFAULTS.httpPath, help: 'http check: path to GET' }),
  row('httpStatus', custom<string>({ name: 'status list', arg: '<status>', schema: { type: ['string', 'integer'] }, parse: (raw) => String(raw) }), {
    flag: '--check-http-status', default: CHECK_DEFAULTS.httpStatus, help: 'http check: expected status, e.g. 200, 2xx or 200,204',
  }),
  row('sendProxy', boolean(), { flag: '--check-send-proxy', default: false, help: 'send a PROXY v2 LOCAL header on check connections' }),
  row('flapDamping', flapDamping, {
    default: undefined, help: 'a backend that changed state more than n times in window must pass for hold before it is up again, e.g. 4/60s/30s',
  }),
] as const

const health = section(HEALTH, {
  check(h, at, problems) {
    if (h.type === 'none') return
    if (h.intervalMs < 10) problems.add([...at, 'interval'], h.intervalMs, 'must be at least 10ms')
    if (h.timeoutMs < 1) problems.add([...at, 'timeout'], h.timeoutMs, 'must be more than 0')
    // The type checks its own settings: one place for flags, the file and the prober's callers.
    for (const p of checks[h.type].validate(h)) problems.add([...at, p.key], p.value, p.problem)
  },
})

/** Options after a backend's address, in YAML (`weight: 3`) and in the flag form (`,weight=3`). */
export const BACKEND = [
  row('weight', integer(MIN_WEIGHT, MAX_WEIGHT), { flag: null, default: 1, help: 'share of new connections relative to the other backends' }),
  row('backup', boolean(), { flag: null, default: false, help: 'used only while no primary backend is usable' }),
  row('checkPort', port(), { flag: null, default: undefined, help: 'health-check this port instead of the backend\'s' }),
  row('maxConns', integer(0, 10_000_000), { flag: null, default: 0, help: 'concurrent connections to this backend, 0 = unlimited; more wait up to --queue-timeout' }),
] as const

export const SERVICE = [
  row('name', text({ pattern: /^[A-Za-z0-9_.-]{1,64}$/, problem: 'must be 1-64 letters, digits, "_", "." or "-"', arg: '<name>' }), {
    default: undefined, help: 'service name in logs and metrics (default "default"; in a file "service", or "serviceN")',
  }),
  row('listen', list(listenAddress()), { short: '-l', repeatable: true, default: [], required: 'at least one listen address is required', help: 'address to listen on, repeatable (":5432" = every address)' }),
  row('backends', backendsKind(BACKEND, { weightKey: 'weight' }), { flag: '--backend', short: '-b', repeatable: true, default: [], required: 'at least one backend is required', help: 'backend server, repeatable' }),
  row('protocol', protocols, { field: 'protocols', default: ['tcp'], help: 'protocol to balance' }),
  row('balance', oneOf(() => algorithmNames, { arg: '<algorithm>' }), { short: '-a', default: 'consistent', help: 'balancing algorithm (consistent = Maglev)' }),
  row('hashKey', oneOf(['src-ip', 'src-ip-port']), { default: 'src-ip', help: 'what hashing algorithms hash' }),
  row('proxyProtocol', oneOf(['none', 'v1', 'v2'], { also: new Map([[false, 'none']]) }), { default: 'none', help: 'send a PROXY protocol header to backends' }),
  row('acceptProxy', cidrs(), { repeatable: true, default: [], help: 'accept PROXY headers from these source CIDRs, repeatable' }),
  row('acceptProxyStrict', boolean(), { default: false, help: 'refuse connections from sources outside --accept-proxy (default: serve them as plain TCP)' }),
  row('acceptProxyTimeout', duration({ min: 1, tooSmall: 'must be more than 0' }), { default: DEFAULT_HEADER_TIMEOUT_MS, help: 'deadline for a complete accepted PROXY header' }),
  // 216 bytes is the largest address block (AF_UNIX); a smaller cap would refuse valid headers.
  row('acceptProxyMaxLength', integer(216, 65535), { arg: '<bytes>', default: DEFAULT_MAX_V2_LENGTH, help: 'largest accepted PROXY v2 length field' }),
  row('proxyV2Crc32c', boolean(), { default: false, help: 'add a CRC32C TLV to sent PROXY v2 headers' }),
  row('proxyForwardTlvs', boolean(), { default: false, help: 'forward TLVs of an accepted PROXY v2 header in the sent one' }),
  row('proxyUdpFirstOnly', boolean(), { default: false, help: "udp: send the PROXY v2 header on a session's first datagram only (default: every datagram)" }),
  row('health', health, { flag: null, default: defaultsOf(HEALTH), help: 'health checks (the --check* flags)' }),
  row('onDown', oneOf(['keep', 'shutdown']), { default: 'keep', help: 'what happens to connections of a backend marked down' }),
  row('connectTimeout', duration({ min: 1, tooSmall: 'must be more than 0' }), { default: 5_000, help: 'backend connect timeout' }),
  row('idleTimeout', duration(), { default: 3_600_000, help: 'close connections idle this long, 0 = never' }),
  row('retries', integer(0, 16), { default: 2, help: 'other backends to try when a connect fails' }),
  row('slowStart', duration(), { default: 0, help: 'a backend that comes back up ramps from near zero to its full weight over this long (HAProxy slowstart), 0 = off' }),
  row('maxConns', integer(0, 10_000_000), { default: 0, help: 'concurrent connections per service, 0 = unlimited' }),
  row('allow', cidrs(), { repeatable: true, default: [], help: 'admit only clients from these CIDRs, repeatable (default: everyone)' }),
  row('deny', cidrs(), { repeatable: true, default: [], help: 'refuse clients from these CIDRs, repeatable; deny wins over allow' }),
  row('maxConnsPerIp', integer(0, 10_000_000), { default: 0, help: 'concurrent connections per client address, 0 = unlimited' }),
  row('ratePerIp', integer(0, 10_000_000), { arg: '<n>', default: 0, help: 'new connections (udp: sessions) per second per client address, 0 = unlimited' }),
  row('logConnections', oneOf(['all', 'errors', 'none']), { default: 'all', help: 'one log line per closed connection: all, only failed ones (errors), or none' }),
  row('queueTimeout', duration(), { default: 0, help: 'how long a connection may wait for a backend below its maxConns, 0 = refuse at once' }),
  row('drainTimeout', duration(), { default: 30_000, help: 'on SIGTERM, wait this long for connections' }),
  // HAProxy's and nginx's habit: a deep accept queue for bursts of new connections.
  row('backlog', integer(1, 65535), { default: 4096, help: 'listen backlog' }),
  row('reusePort', boolean(), { default: false, help: 'set SO_REUSEPORT on listeners (Node >= 22.12)' }),
  row('resolveInterval', duration(), { default: 30_000, help: 're-resolve backend hostnames and srv: names this often, 0 = never' }),
  // A session that never idles out would hold a socket per client port forever.
  row('udpIdleTimeout', duration({ min: 10 }), { default: 30_000, help: 'udp: end a session idle this long' }),
  row('udpResponses', integer(0, 1_000_000), { default: 0, help: 'udp: replies per client datagram before the session ends, 0 = unlimited (1 for DNS)' }),
  row('udpMaxSessions', integer(1, 10_000_000), { default: 100_000, help: 'udp: sessions per service; new flows beyond it are dropped' }),
  row('udpMaxSessionsPerIp', integer(0, 10_000_000), { default: 0, help: 'udp: sessions per client address, 0 = unlimited' }),
  // 4 MiB absorbs bursts between event-loop turns; Linux caps it at net.core.rmem_max.
  row('udpBuffer', size(MIN_UDP_BUFFER_BYTES, MAX_UDP_BUFFER_BYTES), { default: 4 * 1024 * 1024, help: 'udp: receive/send buffer of listening sockets, e.g. 4MiB' }),
  row('udpKeepOnDown', boolean(), {
    deprecatedFlag: '--udp-keep-sessions', default: false, help: 'udp: keep sessions on a backend marked down until idle (default: move them)',
  }),
] as const

export const LOG = [
  row('level', oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), { flag: '--log-level', arg: '<level>', default: 'info', help: 'log level' }),
  row('format', oneOf(['json', 'pretty']), { flag: '--log-format', default: 'json', help: 'log format' }),
] as const

export const ADMIN = [
  row('listen', adminListen, { flag: '--admin', required: 'must be "host:port" or a unix socket path', help: 'admin HTTP endpoint (status, metrics, drain); off by default' }),
  row('tokenFile', text({ pattern: /./, problem: 'must be a file path', arg: '<file>' }), { flag: '--admin-token-file', default: undefined, help: 'require this bearer token on the admin endpoint' }),
] as const

/** Top-level keys besides `services` (a list of SERVICE mappings, read by validateConfig). */
export const TOP = [
  row('admin', section(ADMIN, { shorthand: 'listen', falseIsOff: true, notMapping: 'must be "host:port", a unix socket path, or {listen, tokenFile}' }), {
    flag: null, default: undefined, help: 'admin HTTP endpoint: "host:port", a unix socket path, or {listen, tokenFile}',
  }),
  row('log', section(LOG), { flag: null, default: defaultsOf(LOG), help: 'logging' }),
  row('resolvers', list(resolver), { flag: '--resolver', repeatable: true, default: [], help: 'DNS server for backend names, repeatable (default: the system resolver)' }),
  row('dataPlane', oneOf(['auto', 'native', 'node']), {
    // auto: a TCP service runs on the native plane where the addon is built and the service
    // uses nothing it lacks (lib/native nativeLacks), on node otherwise, and says why (issue 14).
    default: 'auto', help: 'TCP data plane: node = node:net; native = C engine threads (where the addon is built); auto = native where a service can use it',
  }),
  row('threads', integer(0, 256), { default: 0, help: 'native plane engine threads, 0 = one per CPU' }),
] as const

/** One source of truth for every default an operator can override (DESIGN: "a default lives in config/"). */
export const DEFAULTS = {
  ...defaultsOf(SERVICE),
  ...defaultsOf(BACKEND),
  health: defaultsOf(HEALTH),
  log: defaultsOf(LOG),
} as const
