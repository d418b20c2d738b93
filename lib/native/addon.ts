/**
 * The native addon (lib/native/src/addon.c) as TypeScript sees it: the calls it exports, the
 * shapes and numbers shared with engine.h (record layout, reasons, stats), and loading it.
 */
import { createRequire } from 'node:module'
import { constants as osConstants } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type PickData } from '../balance/index.js'
import type { TcpCloseReason } from '../tcp/service.js'

export type DataPlane = 'auto' | 'native' | 'node'
export const DATA_PLANES: readonly DataPlane[] = ['auto', 'native', 'node']

/** Which plane carries a service, and why (start-up log, `l4lb check`, /status). */
export interface PlaneChoice {
  readonly plane: 'native' | 'node'
  readonly why: string
}

/** The calls lib/native/src/addon.c exports. */
export interface Addon {
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

export type PoolEntries = ReadonlyArray<{ readonly address: string; readonly port: number; readonly slot: number; readonly maxConns?: number }>

export interface NativeConfig {
  connectTimeoutMs: number
  idleTimeoutMs: number
  retries: number
  maxConns: number
  queueTimeoutMs: number
  hashPort: number
  proxyVersion: number
  proxyCrc32c: number
}

export type NativePick = Omit<PickData, 'algorithm'> & { algorithm: number }

/** The redispatch targets (l4_backups): usable backups while primaries serve. */
export interface NativeBackups {
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
export const ALGORITHMS: Record<PickData['algorithm'], number> = {
  maglev: 0, ring: 1, 'ip-hash': 2, 'round-robin': 3, 'least-conn': 4, 'random-two': 5,
}

/** enum l4_reason, in order. */
export const REASONS: readonly TcpCloseReason[] = [
  'client-closed', 'backend-closed', 'client-reset', 'backend-reset', 'client-error', 'backend-error',
  'idle-timeout', 'shutdown', 'backend-down', 'no-backend', 'connect-failed', 'queue-timeout', 'backend-full',
]

/** struct l4_record (engine.h), checked by _Static_assert in addon.c. */
export const RECORD_BYTES = 112
export const BATCH_RECORDS = 1024
export const REC_CLOSE = 0
export const REC_CONNECT_FAIL = 1
export const REC_MAX_CONNS = 2
export const REC_ACCEPT_ERROR = 3
export const REC_GEN_DONE = 4
export const REC_REFUSED = 5
export const ERR_TIMEOUT = -1
/** enum l4_stat indices (engine.h) of what addon.stats returns. */
export const STAT_REJECTED_MAX_CONNS = 1
export const STAT_REFUSED_DENIED = 7
export const STAT_REFUSED_NOT_ALLOWED = 8
export const STAT_REFUSED_MAX_CONNS_PER_IP = 9
export const STAT_REFUSED_RATE_PER_IP = 10
export const STAT_QUEUED = 13
export const STAT_QUEUE_TIMEOUTS = 14
export const STAT_BACKEND_FULL = 15
/** Counter slots per pool (backends ever added to one service; 256 KiB of address space). */
export const COUNTER_SLOTS = 65_536


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

export const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]))

export function errorName(errno: number): string {
  return errno === ERR_TIMEOUT ? 'timeout' : (errnoNames.get(errno) ?? `errno ${errno}`)
}
