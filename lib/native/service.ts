/**
 * One TCP service on the native plane: publishes its pool's pick data, admission settings and
 * config to the engine on every change, and turns the engine's close records into the same pino
 * line and the same pool calls the node plane makes (lib/tcp/service.ts).
 */
import type { Logger } from 'pino'
import { CidrList, formatHostPort, type HostPort } from '../address/index.js'
import type { PickData } from '../balance/index.js'
import type { ServiceConfig } from '../config/index.js'
import { ListenError, LOCAL_ERROR_CODES, listenProblem } from '../errors.js'
import { REFUSAL_REASONS, zeroCounts, type RefusalCounts } from '../flow/admit.js'
import { dispositionOf } from '../flow/policy.js'
import { FlowLog } from '../flow/log.js'
import type { Backend, Pool, StateChange } from '../pool/index.js'
import type { TcpStats } from '../tcp/service.js'
import type { CloseReason } from '../tcp/splice.js'
import { ALGORITHMS, errnoNames, errorName, REASONS, REC_ACCEPT_ERROR, REC_CLOSE, REC_CONNECT_FAIL, REC_MAX_CONNS, REC_REFUSED, STAT_BACKEND_FULL, STAT_QUEUE_TIMEOUTS, STAT_QUEUED, STAT_REFUSED_DENIED, STAT_REFUSED_MAX_CONNS_PER_IP, STAT_REFUSED_NOT_ALLOWED, STAT_REFUSED_RATE_PER_IP, STAT_REJECTED_MAX_CONNS, type Addon, type NativeAdmission, type NativeConfig, type NativePick } from './addon.js'
import type { NativeEngine } from './engine.js'

/**
 * Bytes per counter slot. `live` ([2 * slot] from clients, [2 * slot + 1] from the backend) is
 * what the engine's threads have read for opened connections, counted per chunk; `closed` is the
 * part close records have already added to the pool's totals. The difference is what open
 * connections have moved so far, so pool totals + open bytes equal `live` at every scrape.
 */
export interface SlotBytes {
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
