/**
 * Per-source token buckets in a bounded table (issue 12 item 3, `--rate-per-ip N/s`): a source
 * may open `burst` connections at once and `ratePerSec` a second after that. With the default
 * burst = rate this admits at most N new connections in any one-second window from a full
 * bucket, which is what HAProxy users write as `sc_conn_rate` over `conn_rate(1s)` with
 * `reject if { sc_conn_rate(0) gt N }`, without HAProxy's sliding-window estimate; nginx's
 * `limit_req` defaults to burst 0, too strict for connection pools that open several
 * connections at once.
 *
 * The table holds at most `maxSources` buckets (default 2^20, HAProxy's `size 1m`), least
 * recently used evicted first. Evicting a bucket forgets that the source spent tokens, i.e.
 * it starts again with a full burst; the LRU order makes that the source heard from least
 * recently. Memory: a Map entry (source key → slot), a key array slot and 32 bytes of
 * typed-array state (tokens, time, LRU links) per source; IPv4 sources are int32 keys (no string kept), IPv6 ones their address text. See
 * tests/flow/limiter.test.ts and perf/flow-memory.mjs for the measured bytes per source.
 */

/** IPv4 as an int32 (see sourceKey in admit.ts), anything else its canonical text. */
export type SourceKey = number | string

export const DEFAULT_MAX_SOURCES = 1 << 20
/** Typed arrays start this big and double, so a quiet service does not pay for 2^20 slots. */
const INITIAL_SLOTS = 1024

export interface TokenBucketOptions {
  /** Tokens added per second; > 0 (fractions allowed: 0.5 = one every 2 s). */
  readonly ratePerSec: number
  /** Bucket size, the most taken at once; ≥ 1, default `ratePerSec` (at least 1). */
  readonly burst?: number
  /** Most sources tracked at once; default DEFAULT_MAX_SOURCES. */
  readonly maxSources?: number
  /** Monotonic milliseconds; injectable for tests. */
  readonly now?: () => number
}

export class TokenBuckets {
  readonly ratePerSec: number
  readonly burst: number
  readonly maxSources: number
  readonly #ratePerMs: number
  readonly #now: () => number
  readonly #slots = new Map<SourceKey, number>()
  /** The key of each slot, to delete it from the Map when the slot is evicted. */
  readonly #keys: SourceKey[] = []
  #tokens: Float64Array
  #updatedAt: Float64Array
  /**
   * Recency as a doubly linked list through slot numbers (-1 = none): #newest first. A Map's
   * own insertion order would do for recency, but finding its oldest key walks over every
   * deleted entry still in its table, which made eviction quadratic under churn.
   */
  #prev: Int32Array
  #next: Int32Array
  #newest = -1
  #oldest = -1
  /** Slots handed out so far; slots are never freed, only reused on eviction. */
  #used = 0
  /** Buckets dropped to make room for a new source (a table that is too small shows here). */
  evictions = 0

  constructor(options: TokenBucketOptions) {
    const { ratePerSec } = options
    if (!(ratePerSec > 0) || !Number.isFinite(ratePerSec)) throw new RangeError(`ratePerSec must be > 0, got ${ratePerSec}`)
    const burst = options.burst ?? Math.max(1, ratePerSec)
    if (!(burst >= 1) || !Number.isFinite(burst)) throw new RangeError(`burst must be ≥ 1, got ${burst}`)
    const maxSources = options.maxSources ?? DEFAULT_MAX_SOURCES
    if (!Number.isInteger(maxSources) || maxSources < 1) throw new RangeError(`maxSources must be a positive integer, got ${maxSources}`)
    this.ratePerSec = ratePerSec
    this.burst = burst
    this.maxSources = maxSources
    this.#ratePerMs = ratePerSec / 1000
    this.#now = options.now ?? monotonicNow
    const initial = Math.min(INITIAL_SLOTS, maxSources)
    this.#tokens = new Float64Array(initial)
    this.#updatedAt = new Float64Array(initial)
    this.#prev = new Int32Array(initial)
    this.#next = new Int32Array(initial)
  }

  /** Sources tracked now. */
  get size(): number {
    return this.#slots.size
  }

  /** Takes one token from `key`'s bucket: true when there was one (admit), false when empty. */
  take(key: SourceKey): boolean {
    const now = this.#now()
    let slot = this.#slots.get(key)
    if (slot === undefined) {
      slot = this.#freeSlot()
      this.#slots.set(key, slot)
      this.#keys[slot] = key
      this.#pushNewest(slot)
      this.#tokens[slot] = this.burst - 1
      this.#updatedAt[slot] = now
      return true
    }
    if (slot !== this.#newest) {
      this.#unlink(slot)
      this.#pushNewest(slot)
    }
    // a clock that steps back earns nothing until it passes the last time again
    const elapsedMs = now - this.#updatedAt[slot]!
    const tokens = elapsedMs > 0 ? Math.min(this.burst, this.#tokens[slot]! + elapsedMs * this.#ratePerMs) : this.#tokens[slot]!
    if (elapsedMs > 0) this.#updatedAt[slot] = now
    if (tokens < 1) {
      this.#tokens[slot] = tokens
      return false
    }
    this.#tokens[slot] = tokens - 1
    return true
  }

  /** Tokens `key` has now (burst for an unknown source); for tests and /status. */
  tokens(key: SourceKey): number {
    const slot = this.#slots.get(key)
    if (slot === undefined) return this.burst
    const elapsedMs = Math.max(0, this.#now() - this.#updatedAt[slot]!)
    return Math.min(this.burst, this.#tokens[slot]! + elapsedMs * this.#ratePerMs)
  }

  has(key: SourceKey): boolean {
    return this.#slots.has(key)
  }

  #freeSlot(): number {
    if (this.#used < this.maxSources) {
      if (this.#used === this.#tokens.length) this.#grow()
      return this.#used++
    }
    // full: the least recently used source gives up its slot
    const slot = this.#oldest
    this.#unlink(slot)
    this.#slots.delete(this.#keys[slot]!)
    this.evictions++
    return slot
  }

  #pushNewest(slot: number): void {
    this.#prev[slot] = -1
    this.#next[slot] = this.#newest
    if (this.#newest >= 0) this.#prev[this.#newest] = slot
    this.#newest = slot
    if (this.#oldest < 0) this.#oldest = slot
  }

  #unlink(slot: number): void {
    const prev = this.#prev[slot]!
    const next = this.#next[slot]!
    if (prev >= 0) this.#next[prev] = next
    else this.#newest = next
    if (next >= 0) this.#prev[next] = prev
    else this.#oldest = prev
  }

  #grow(): void {
    const length = Math.min(this.maxSources, this.#tokens.length * 2)
    this.#tokens = grown(this.#tokens, new Float64Array(length))
    this.#updatedAt = grown(this.#updatedAt, new Float64Array(length))
    this.#prev = grown(this.#prev, new Int32Array(length))
    this.#next = grown(this.#next, new Int32Array(length))
  }
}

function grown<T extends Float64Array | Int32Array>(from: T, to: T): T {
  to.set(from)
  return to
}

function monotonicNow(): number {
  return performance.now()
}
