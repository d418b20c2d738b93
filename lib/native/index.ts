/**
 * The native data plane's TypeScript side (DESIGN "Two data planes, one control plane"): loads
 * the addon if it was built, chooses each service's plane, publishes the pool's pick data to the
 * engine on every pool change, and turns the engine's close records into the same pino line and
 * the same pool calls the node plane makes (lib/tcp/service.ts). No policy lives here or in C:
 * the pool and its picker decide, the engine indexes what they published.
 */
import { createRequire } from 'node:module'
import { availableParallelism, constants as osConstants } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { CidrList, formatHostPort, type HostPort } from '../address/index.js'
import { isBalanceName, type PickData } from '../balance/index.js'
import type { Config, ServiceConfig } from '../config/index.js'
import { ListenError, LOCAL_ERROR_CODES, listenProblem } from '../errors.js'
import { REFUSAL_REASONS, zeroCounts, type RefusalCounts } from '../flow/admit.js'
import { dispositionOf } from '../flow/policy.js'
import { FlowLog } from '../flow/log.js'
import type { Backend, Pool, StateChange } from '../pool/index.js'
import type { TcpCloseReason, TcpStats } from '../tcp/service.js'
import type { CloseReason } from '../tcp/splice.js'

export type DataPlane = 'auto' | 'native' | 'node'
export const DATA_PLANES: readonly DataPlane[] = ['auto', 'native', 'node']

/** Which plane carries a service, and why (start-up log, `l4lb check`, /status). */
export interface PlaneChoice {
  readonly plane: 'native' | 'node'
  readonly why: string
}

/** The calls lib/native/src/addon.c exports. */
interface Addon {
  createEngine(threads: number, onRecords: () => void): unknown
  engineThreads(engine: unknown): number
  stopEngine(engine: unknown): void
  keepAlive(engine: unknown, on: boolean): void
  drain(engine: unknown, into: ArrayBuffer): number
  createCounters(engine: unknown, n: number, gen: number): Int32Array
  createService(engine: unknown, id: number): unknown
  listen(service: unknown, host: string, port: number, backlog: number): { address: string; port: number }
  publish(service: unknown, counters: Int32Array, config: NativeConfig, pick: NativePick, entries: PoolEntries, backup: NativeBackups | undefined, admission: NativeAdmission): void
  stopAccepting(service: unknown): void
  closeAll(service: unknown, reason: number): void
  shutdownSlot(service: unknown, counters: Int32Array, slot: number, reason: number): void
  active(service: unknown): number
  stats(service: unknown): number[]
  releaseService(service: unknown): void
  pickMany(pick: NativePick, entryCount: number, hashes: Uint32Array, active: Int32Array): Int32Array
  admitSequence(admission: NativeAdmission, ops: ReadonlyArray<readonly [admit: boolean, ip: string, nowMs: number]>): Int32Array
  murmur3(bytes: Uint8Array, seed: number): number
  proxyHeader(version: number, src: string, srcPort: number, dst: string, dstPort: number, id: string, crc32c: boolean): Buffer
  trimMemory(): boolean
}

type PoolEntries = ReadonlyArray<{ readonly address: string; readonly port: number; readonly slot: number; readonly maxConns?: number }>

interface NativeConfig {
  connectTimeoutMs: number
  idleTimeoutMs: number
  retries: number
  maxConns: number
  queueTimeoutMs: number
  hashPort: number
  proxyVersion: number
  proxyCrc32c: number
}

type NativePick = Omit<PickData, 'algorithm'> & { algorithm: number }

/** The redispatch targets (l4_backups): usable backups while primaries serve. */
interface NativeBackups {
  entries: PoolEntries
  pick: NativePick
}

/**
 * The admit stage's settings (admit.h l4_admit_config): CIDR blocks as lib/address parsed them,
 * 9 words each; 0 = off. burst and maxSources 0 take the defaults lib/flow/limiter.ts takes.
 */
export interface NativeAdmission {
  allow: Uint32Array
  deny: Uint32Array
  maxConnsPerIp: number
  ratePerSec: number
  burst: number
  maxSources: number
}

/** Algorithm numbers of pick.h (enum l4_algorithm). */
const ALGORITHMS: Record<PickData['algorithm'], number> = {
  maglev: 0, ring: 1, 'ip-hash': 2, 'round-robin': 3, 'least-conn': 4, 'random-two': 5,
}

/** enum l4_reason, in order. */
const REASONS: readonly TcpCloseReason[] = [
  'client-closed', 'backend-closed', 'client-reset', 'backend-reset', 'client-error', 'backend-error',
  'idle-timeout', 'shutdown', 'backend-down', 'no-backend', 'connect-failed', 'queue-timeout', 'backend-full',
]

/** struct l4_record (engine.h), checked by _Static_assert in addon.c. */
const RECORD_BYTES = 112
const BATCH_RECORDS = 1024
const REC_CLOSE = 0
const REC_CONNECT_FAIL = 1
const REC_MAX_CONNS = 2
const REC_ACCEPT_ERROR = 3
const REC_GEN_DONE = 4
const REC_REFUSED = 5
const ERR_TIMEOUT = -1
/** enum l4_stat indices (engine.h) of what addon.stats returns. */
const STAT_REJECTED_MAX_CONNS = 1
const STAT_REFUSED_DENIED = 7
const STAT_REFUSED_NOT_ALLOWED = 8
const STAT_REFUSED_MAX_CONNS_PER_IP = 9
const STAT_REFUSED_RATE_PER_IP = 10
const STAT_QUEUED = 13
const STAT_QUEUE_TIMEOUTS = 14
const STAT_BACKEND_FULL = 15
/** Counter slots per pool (backends ever added to one service; 256 KiB of address space). */
const COUNTER_SLOTS = 65_536

// ---- loading ------------------------------------------------------------------------------

/** lib/native/build/Release from dist/lib/native (compiled) or lib/native (sources). */
function addonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  const root = here.includes(`${join('dist', 'lib', 'native')}`) ? join(here, '..', '..', '..') : join(here, '..', '..')
  return join(root, 'lib', 'native', 'build', 'Release', 'l4lb_native.node')
}

let loaded: { addon: Addon } | { reason: string } | undefined

/** The addon, or why there is none (not built: no compiler at install; or it failed to load). */
export function loadAddon(): { addon: Addon } | { reason: string } {
  if (loaded !== undefined) return loaded
  if (process.platform !== 'linux') return (loaded = { reason: `the native plane is Linux-only (this is ${process.platform})` })
  const path = addonPath()
  try {
    loaded = { addon: createRequire(import.meta.url)(path) as Addon }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    loaded = { reason: code === 'MODULE_NOT_FOUND' ? 'the native addon is not built (no compiler at npm install? run `npm run build:native`)' : `the native addon failed to load: ${(err as Error).message}` }
  }
  return loaded
}

export function nativeAddon(): Addon | undefined {
  const result = loadAddon()
  return 'addon' in result ? result.addon : undefined
}

// ---- choosing a plane ----------------------------------------------------------------------

/** What a service uses that the native plane lacks, or undefined. */
export function nativeLacks(service: ServiceConfig): string | undefined {
  if (!service.protocols.includes('tcp')) return 'UDP stays on the node plane'
  if (service.protocols.includes('udp')) return 'tcp,udp services stay on the node plane'
  if (!isBalanceName(service.balance)) return `balance ${service.balance} is a registered algorithm (only built-in ones export pick data)`
  if (service.acceptProxy.length > 0) return 'accept-proxy (PROXY parsing stays in TypeScript)'
  for (const l of service.listen) if (l.family === 0) return `listen address ${l.host} is a hostname`
  return undefined
}

/**
 * `pool` is the service's pool when it already runs (a reload): a pool made without the engine's
 * shared counters cannot move to the native plane until a restart.
 */
export function choosePlane(service: ServiceConfig, requested: DataPlane, pool?: Pool): PlaneChoice {
  if (requested === 'node') return { plane: 'node', why: 'data-plane node' }
  const lacks = nativeLacks(service)
  if (lacks !== undefined) return { plane: 'node', why: lacks }
  if (pool !== undefined && engine?.storageOf(pool.active) === undefined) return { plane: 'node', why: 'started on the node plane (restart to move it)' }
  const result = loadAddon()
  if (!('addon' in result)) return { plane: 'node', why: result.reason }
  return { plane: 'native', why: requested === 'native' ? 'data-plane native' : 'auto: native addon built' }
}

let fallbackNoted = false

/**
 * Says once per process that the native plane is not available and why, when a service that
 * could have used it runs on the node plane for that reason alone.
 */
export function noteFallback(logger: Logger, service: ServiceConfig, choice: PlaneChoice): void {
  if (fallbackNoted || choice.plane !== 'node' || nativeLacks(service) !== undefined || choice.why === 'data-plane node') return
  const result = loadAddon()
  if ('addon' in result) return
  fallbackNoted = true
  logger.info({ reason: result.reason }, 'native data plane unavailable: TCP services run on the node plane')
}

/** `--data-plane native` that cannot be honoured: the one line to exit 2 with. */
export function planeProblem(config: Config): string | undefined {
  if (config.dataPlane !== 'native') return undefined
  const result = loadAddon()
  if (!('addon' in result)) return `--data-plane native: ${result.reason}`
  for (const service of config.services) {
    const lacks = nativeLacks(service)
    if (lacks !== undefined) return `--data-plane native: service ${service.name}: ${lacks}`
  }
  return undefined
}

// ---- the engine ----------------------------------------------------------------------------

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]))

function errorName(errno: number): string {
  return errno === ERR_TIMEOUT ? 'timeout' : (errnoNames.get(errno) ?? `errno ${errno}`)
}

/** One engine per process: its threads serve every native service. */
export class NativeEngine {
  readonly #addon: Addon
  readonly #handle: unknown
  readonly threads: number
  readonly #services = new Map<number, NativeTcpService>()
  /** Counter storage by its memory, so a pool's `active` prefix leads back to it. */
  readonly #storage = new WeakMap<ArrayBufferLike, Int32Array>()
  /** Per counter storage: live bytes per slot, and what close records have handed to the pool. */
  readonly #bytes = new WeakMap<ArrayBufferLike, SlotBytes>()
  readonly #buffer = new ArrayBuffer(RECORD_BYTES * BATCH_RECORDS)
  readonly #view = new DataView(this.#buffer)
  readonly #recordBytes = new Uint8Array(this.#buffer)
  #nextService = 1
  #nextGen = 1
  #listening = 0

  constructor(addon: Addon, threads: number) {
    this.#addon = addon
    this.#handle = addon.createEngine(threads, this.drain)
    this.threads = addon.engineThreads(this.#handle)
  }

  get addon(): Addon {
    return this.#addon
  }

  /**
   * Storage for a pool's live counts (PoolOptions.activeStorage): the engine's counters, shared
   * memory both sides read. A pool never reuses a slot, so it is sized for every backend a
   * service will ever have (zero pages cost no memory until touched).
   */
  createCounters(slots = COUNTER_SLOTS): Int32Array {
    const storage = this.#addon.createCounters(this.#handle, slots, this.#nextGen++)
    this.#storage.set(storage.buffer, storage)
    // l4_counters_bytes_offset: the int32 counts rounded up to 8 bytes
    const offset = Math.ceil((Math.max(slots, 1) * 4) / 8) * 8
    // l4_counters_queued_offset: after the two uint64 byte counts per slot
    const queued = new Int32Array(storage.buffer, offset + Math.max(slots, 1) * 16, slots)
    this.#bytes.set(storage.buffer, { live: new BigUint64Array(storage.buffer, offset, slots * 2), closed: new Map(), queued })
    return storage
  }

  /** The live byte counters of a counter storage (see createCounters). */
  bytesOf(storage: Int32Array): SlotBytes | undefined {
    return this.#bytes.get(storage.buffer)
  }

  /** The counter storage `active` (a prefix view of it) lives in, if it is the engine's. */
  storageOf(active: Int32Array): Int32Array | undefined {
    return this.#storage.get(active.buffer)
  }

  createService(service: NativeTcpService): { handle: unknown; id: number } {
    const id = this.#nextService++
    this.#services.set(id, service)
    return { handle: this.#addon.createService(this.#handle, id), id }
  }

  /** Native listeners are not libuv handles: while any is open, keep the process alive. */
  listening(delta: 1 | -1): void {
    const before = this.#listening
    this.#listening += delta
    if (before === 0 && this.#listening > 0) this.#addon.keepAlive(this.#handle, true)
    else if (before > 0 && this.#listening === 0) this.#addon.keepAlive(this.#handle, false)
  }

  forget(id: number): void {
    this.#services.delete(id)
  }

  /** Called by the engine (through a threadsafe function) when records wait; also safe to call any time. */
  readonly drain = (): void => {
    const view = this.#view
    for (;;) {
      const n = this.#addon.drain(this.#handle, this.#buffer)
      for (let i = 0; i < n; i++) {
        const at = i * RECORD_BYTES
        const kind = view.getUint8(at)
        if (kind === REC_GEN_DONE) continue
        this.#services.get(view.getUint32(at + 4, true))?.onRecord(kind, view, this.#recordBytes, at)
      }
      if (n < BATCH_RECORDS) break
    }
    for (const service of this.#services.values()) service.checkIdle()
  }

  stop(): void {
    this.#addon.stopEngine(this.#handle)
  }
}

let engine: NativeEngine | undefined

/** The process's engine, started on first use with `threads` (0 = one per CPU). */
export function nativeEngine(threads: number): NativeEngine {
  if (engine !== undefined) return engine
  const addon = nativeAddon()
  if (addon === undefined) throw new Error('native addon not loaded')
  engine = new NativeEngine(addon, threads > 0 ? threads : availableParallelism())
  return engine
}

// ---- one service on the native plane --------------------------------------------------------

/**
 * Bytes per counter slot. `live` ([2 * slot] from clients, [2 * slot + 1] from the backend) is
 * what the engine's threads have read for opened connections, counted per chunk; `closed` is the
 * part close records have already added to the pool's totals. The difference is what open
 * connections have moved so far, so pool totals + open bytes equal `live` at every scrape.
 */
interface SlotBytes {
  readonly live: BigUint64Array
  readonly closed: Map<number, [number, number]>
  /** Connections waiting in the engine for a slot of a backend at its maxConns, by slot. */
  readonly queued: Int32Array
}

function latin1(bytes: Uint8Array, from: number, to: number): string {
  let end = from
  while (end < to && bytes[end] !== 0) end++
  return Buffer.from(bytes.buffer, bytes.byteOffset + from, end - from).toString('latin1')
}

function nativeConfig(config: ServiceConfig): NativeConfig {
  const u32 = (n: number): number => Math.min(0xffffffff, Math.max(0, Math.floor(n)))
  return {
    connectTimeoutMs: u32(config.connectTimeoutMs),
    idleTimeoutMs: u32(config.idleTimeoutMs),
    retries: u32(config.retries),
    maxConns: u32(config.maxConns),
    queueTimeoutMs: u32(config.queueTimeoutMs),
    hashPort: config.hashKey === 'src-ip-port' ? 1 : 0,
    proxyVersion: config.proxyProtocol === 'v1' ? 1 : config.proxyProtocol === 'v2' ? 2 : 0,
    proxyCrc32c: config.proxyV2Crc32c ? 1 : 0,
  }
}

export function nativeAdmission(config: Pick<ServiceConfig, 'allow' | 'deny' | 'maxConnsPerIp' | 'ratePerIp'>): NativeAdmission {
  return {
    allow: new CidrList(config.allow).packed(),
    deny: new CidrList(config.deny).packed(),
    maxConnsPerIp: Math.min(0xffffffff, Math.max(0, Math.floor(config.maxConnsPerIp))),
    ratePerSec: config.ratePerIp > 0 && Number.isFinite(config.ratePerIp) ? config.ratePerIp : 0,
    burst: 0,
    maxSources: 0,
  }
}

export function nativePick(pick: PickData): NativePick {
  return { ...pick, algorithm: ALGORITHMS[pick.algorithm] }
}

/**
 * A TCP service whose connections the engine's threads carry. Same surface as TcpService
 * (lib/tcp/service.ts), so the runtime, admin and drain logic do not know which plane it is.
 */
export class NativeTcpService {
  readonly name: string
  pool: Pool
  #config: ServiceConfig
  readonly #engine: NativeEngine
  readonly #addon: Addon
  readonly #handle: unknown
  readonly #id: number
  /** The pool's counter storage (its `active` is a prefix of it). */
  readonly #counters: Int32Array
  readonly #slotBytes: SlotBytes
  readonly #logger: Logger
  /** The same close, refusal and error lines as the node plane's, by the same rules (lib/flow/log). */
  readonly #log: FlowLog
  #admission: NativeAdmission
  readonly #bound: HostPort[] = []
  #idleWaiters: Array<() => void> = []
  #released = false
  #listening = false

  constructor(config: ServiceConfig, pool: Pool, logger: Logger, engine: NativeEngine) {
    this.name = config.name
    this.#config = config
    this.#engine = engine
    this.#addon = engine.addon
    this.#logger = logger.child({ service: config.name, proto: 'tcp' })
    this.#log = new FlowLog(this.#logger, config.logConnections)
    this.#admission = nativeAdmission(config)
    const counters = engine.storageOf(pool.active)
    if (counters === undefined) throw new Error(`service ${config.name}: its pool does not count in the engine's memory`)
    this.#counters = counters
    const bytes = engine.bytesOf(counters)
    if (bytes === undefined) throw new Error(`service ${config.name}: its counters have no byte counts`)
    this.#slotBytes = bytes
    pool.readQueuedFrom((id) => Atomics.load(bytes.queued, id))
    const { handle, id } = engine.createService(this)
    this.#handle = handle
    this.#id = id
    this.pool = pool
    pool.onRebuild(() => {
      if (!this.#released) this.#publish()
    })
    pool.onStateChange(this.#onBackendState)
    this.#publish()
  }

  get config(): ServiceConfig {
    return this.#config
  }

  get activeConnections(): number {
    return this.#released ? 0 : this.#addon.active(this.#handle)
  }

  get stats(): TcpStats {
    if (this.#released) return { accepted: 0, earlyResets: 0, rejectedMaxConns: 0, noBackend: 0, connectFailures: 0, retries: 0, closed: 0, queued: 0, queueTimeouts: 0, backendFull: 0 }
    const stats = this.#addon.stats(this.#handle)
    const [accepted = 0, rejectedMaxConns = 0, noBackend = 0, connectFailures = 0, retries = 0, closed = 0] = stats
    const queued = stats[STAT_QUEUED] ?? 0
    return { accepted, earlyResets: 0, rejectedMaxConns, noBackend, connectFailures, retries, closed, queued, queueTimeouts: stats[STAT_QUEUE_TIMEOUTS] ?? 0, backendFull: stats[STAT_BACKEND_FULL] ?? 0 }
  }

  /**
   * Admission refusals as /metrics reads them, counted by the engine (enum l4_stat): every
   * refusal, including those whose record a full ring dropped.
   */
  get admission(): { readonly refused: RefusalCounts } {
    const refused = zeroCounts()
    if (this.#released) return { refused }
    const stats = this.#addon.stats(this.#handle)
    refused['max-conns'] = stats[STAT_REJECTED_MAX_CONNS] ?? 0
    refused.denied = stats[STAT_REFUSED_DENIED] ?? 0
    refused['not-allowed'] = stats[STAT_REFUSED_NOT_ALLOWED] ?? 0
    refused['max-conns-per-ip'] = stats[STAT_REFUSED_MAX_CONNS_PER_IP] ?? 0
    refused['rate-per-ip'] = stats[STAT_REFUSED_RATE_PER_IP] ?? 0
    return { refused }
  }

  /**
   * Reload: a new snapshot from the new config; established connections keep theirs. The engine
   * keeps its admission tables when the admission settings are unchanged (as FlowContext does).
   */
  update(config: ServiceConfig): void {
    this.#config = config
    this.#admission = nativeAdmission(config)
    this.#log.mode = config.logConnections
    this.#publish()
  }

  /**
   * A new snapshot for the engine. Runs inside the pool's change: a snapshot the engine refuses
   * is logged and the previous one kept, never thrown into the prober or a reload.
   */
  #publish(): void {
    const { entries, pick, backup } = this.pool.exportPickData()
    const backups = backup === undefined ? undefined : { entries: backup.entries, pick: nativePick(backup.pick) }
    try {
      this.#addon.publish(this.#handle, this.#counters, nativeConfig(this.#config), nativePick(pick), entries, backups, this.#admission)
    } catch (err) {
      this.#logger.error({ err: (err as Error).message, backends: entries.length }, 'native plane refused the new pick data: keeping the previous')
    }
  }

  /**
   * A backend left the usable set: by lib/flow/policy, as lib/tcp does, connections still
   * connecting to it move to the next pick, and on-down shutdown ends the established ones.
   */
  readonly #onBackendState = (change: StateChange): void => {
    if (this.#released || dispositionOf(change.to, this.#config, false, false) !== 'move') return
    const cut = dispositionOf(change.to, this.#config, true, false) === 'cut'
    this.#addon.shutdownSlot(this.#handle, this.#counters, change.backend.id, cut ? REASONS.indexOf('backend-down') : -1)
  }

  addresses(): HostPort[] {
    return this.#bound.map((a) => ({ ...a }))
  }

  async listen(): Promise<void> {
    if (!this.#listening) {
      this.#listening = true
      this.#engine.listening(1)
    }
    for (const address of this.#config.listen) this.#bind(address)
  }

  #bind(address: HostPort): void {
    try {
      const bound = this.#addon.listen(this.#handle, address.host, address.port, this.#config.backlog)
      this.#bound.push({ host: bound.address, port: bound.port, family: bound.address.includes(':') ? 6 : 4 })
    } catch (err) {
      const code = errnoNames.get((err as { errno?: number }).errno ?? 0) ?? 'EINVAL'
      if (address.host === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
        this.#bind({ host: '0.0.0.0', port: address.port, family: 4 })
        return
      }
      throw new ListenError(formatHostPort(address.host, address.port), listenProblem(code), err)
    }
  }

  /** Closes the listeners on every engine thread; established connections go on. */
  stopAccepting(): Promise<void> {
    if (!this.#released) this.#addon.stopAccepting(this.#handle)
    this.#notListening()
    return Promise.resolve()
  }

  #notListening(): void {
    if (!this.#listening) return
    this.#listening = false
    this.#engine.listening(-1)
  }

  /** What connectionsTotal last reported, per backend id: the total never goes back. */
  readonly #totalsShown = new Map<number, number>()

  /**
   * Connections to `backend` so far, open ones included, as the node plane counts them (at
   * open): close records have counted the closed ones, the engine's live count adds the open
   * ones. While a close's record is on its way a connection is briefly in neither, so the
   * total is held at what it last showed rather than going back (it is a Prometheus counter).
   */
  connectionsTotal(backend: Backend): number {
    const total = Math.max(backend.connectionsTotal + (this.pool.active[backend.id] ?? 0), this.#totalsShown.get(backend.id) ?? 0)
    this.#totalsShown.set(backend.id, total)
    return total
  }

  /**
   * Bytes moved so far by connections still open, by backend name (`[fromClient, fromBackend]`),
   * as TcpService.openBytes: the engine counts per slot as bytes move, minus what close records
   * have already handed to the pool.
   */
  openBytes(): Map<string, [number, number]> {
    const out = new Map<string, [number, number]>()
    const { live, closed } = this.#slotBytes
    for (const b of this.pool.backends) {
      if (2 * b.id + 1 >= live.length) continue
      const done = closed.get(b.id)
      const fromClient = Number(live[2 * b.id]!) - (done?.[0] ?? 0)
      const fromBackend = Number(live[2 * b.id + 1]!) - (done?.[1] ?? 0)
      if (fromClient > 0 || fromBackend > 0) out.set(b.name, [Math.max(0, fromClient), Math.max(0, fromBackend)])
    }
    return out
  }

  closeAll(reason: CloseReason): void {
    if (!this.#released) this.#addon.closeAll(this.#handle, REASONS.indexOf(reason))
  }

  whenIdle(): Promise<void> {
    if (this.activeConnections === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  /** After each batch of records: wake whoever waits for the last connection to end. */
  checkIdle(): void {
    if (this.#idleWaiters.length === 0 || this.activeConnections > 0) return
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const w of waiters) w()
  }

  /** The service is gone for good (after stopAccepting and drain): the engine may free it. */
  release(): void {
    if (this.#released) return
    this.#addon.stopAccepting(this.#handle)
    this.#notListening()
    this.#released = true
    this.#addon.releaseService(this.#handle)
    this.#engine.forget(this.#id)
  }

  /** One record of this service's (see NativeEngine.drain). */
  onRecord(kind: number, view: DataView, bytes: Uint8Array, at: number): void {
    const clientIp = latin1(bytes, at + 28, at + 76)
    const clientPort = view.getUint32(at + 24, true)
    const pool = this.pool
    const slot = view.getInt32(at + 12, true)
    const backend = slot >= 0 ? pool.byId(slot) : undefined
    if (kind === REC_CLOSE) {
      const opened = view.getUint8(at + 92) !== 0
      const bytesIn = opened ? Number(view.getBigUint64(at + 96, true)) : 0
      const bytesOut = opened ? Number(view.getBigUint64(at + 104, true)) : 0
      if (opened && slot >= 0) {
        const done = this.#slotBytes.closed.get(slot)
        if (done === undefined) this.#slotBytes.closed.set(slot, [bytesIn, bytesOut])
        else {
          done[0] += bytesIn
          done[1] += bytesOut
        }
      }
      if (backend !== undefined && opened) pool.connectionRecorded(backend, bytesIn, bytesOut)
      const reason = REASONS[view.getUint8(at + 1)] ?? 'client-error'
      if (this.#log.wantsClose(reason)) this.#log.close(
        reason,
        {
          id: latin1(bytes, at + 76, at + 92),
          client: formatHostPort(clientIp, clientPort),
          via: undefined,
          backend: backend?.name ?? null,
          bytesIn,
          bytesOut,
          durationMs: view.getUint32(at + 20, true),
          attempts: view.getUint8(at + 2),
          reason,
          proxyError: undefined,
        },
        'connection closed',
      )
    } else if (kind === REC_CONNECT_FAIL) {
      const code = errorName(view.getInt32(at + 16, true))
      if (backend === undefined) return
      if (LOCAL_ERROR_CODES.has(code)) this.#log.warn({ code, backend: backend.name }, 'cannot open a connection to a backend')
      else pool.observeConnectFailure(backend, code)
    } else if (kind === REC_MAX_CONNS || kind === REC_REFUSED) {
      const reason = kind === REC_MAX_CONNS ? 'max-conns' : REFUSAL_REASONS[view.getUint8(at + 1)]
      if (reason !== undefined) this.#log.refused(reason, { client: formatHostPort(clientIp, clientPort) })
    } else if (kind === REC_ACCEPT_ERROR) {
      this.#log.warn({ code: errorName(view.getInt32(at + 16, true)), active: this.activeConnections }, 'accept failed')
    }
  }
}
