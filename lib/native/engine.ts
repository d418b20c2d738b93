/**
 * The process's one native engine (DESIGN "Two data planes"): its threads serve every native
 * service; it drains close records from the engine's ring and hands each to its service.
 */
import { availableParallelism } from 'node:os'
import { type Addon, BATCH_RECORDS, COUNTER_SLOTS, RECORD_BYTES, REC_GEN_DONE, nativeAddon } from './addon.js'
import type { NativeTcpService, SlotBytes } from './service.js'

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

/** The process's engine if one was started (a reload asks whether a pool's counters are its). */
export function runningEngine(): NativeEngine | undefined {
  return engine
}

/** The process's engine, started on first use with `threads` (0 = one per CPU). */
export function nativeEngine(threads: number): NativeEngine {
  if (engine !== undefined) return engine
  const addon = nativeAddon()
  if (addon === undefined) throw new Error('native addon not loaded')
  engine = new NativeEngine(addon, threads > 0 ? threads : availableParallelism())
  return engine
}
