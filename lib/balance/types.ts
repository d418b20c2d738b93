/**
 * The balancer contract (after grpc-js's picker and HAProxy's lb_ops): a picker is an immutable
 * snapshot built once per usable backend set; the pool rebuilds it whenever that set changes and
 * swaps one reference. Pickers never see sockets, timers or health.
 */

/** One usable backend as the balancer sees it. */
export interface BalanceEntry {
  /** Stable identity that hashing algorithms hash: the backend's canonical `host:port`. */
  readonly name: string
  /** Positive integer weight (1..256). */
  readonly weight: number
  /** Index of this backend's counter in the pool-owned `active` array. */
  readonly slot: number
}

/**
 * What a picker hands to another data plane so it can make the same picks (DESIGN "Two data
 * planes": the control plane computes, the data plane indexes). Indices are entry indices, as
 * pick() returns; rank-indexed arrays are in name order. lib/native's lookups read exactly this.
 */
export interface PickData {
  readonly algorithm: 'maglev' | 'ring' | 'ip-hash' | 'round-robin' | 'least-conn' | 'random-two'
  /** Maglev table, ip-hash slots, ring owners, or one period of the smooth-WRR sequence. */
  readonly table?: Int32Array
  /** Ring: the sorted points `table` is parallel to. */
  readonly points?: Uint32Array
  /** least-conn, random-two: entry index, weight, counter slot (and P2C's cumulative weight) per rank. */
  readonly order?: Int32Array
  readonly weights?: Int32Array
  readonly slots?: Int32Array
  readonly ends?: Int32Array
  readonly totalWeight?: number
}

export interface Picker {
  /**
   * The lookup data another plane needs to pick as this picker does (from a fresh state). Every
   * built-in picker has it; an algorithm registered through the library API may not, and then
   * its services stay on the node plane.
   */
  exportPickData?(): PickData
  /**
   * Returns an index into the `entries` the picker was built from, or -1 when every entry is
   * excluded (or there are none). `hash` is the connection's key hash (see hash.ts), computed
   * once per connection; non-hashing algorithms ignore it. `exclude` holds entry indices already
   * tried for this connection (a retry after a refused connect); hashing algorithms then walk on
   * deterministically from the key's position so retries are stable too.
   */
  pick(hash: number, exclude?: ReadonlySet<number> | null): number
}

export interface Algorithm {
  /** True when the same key maps to the same backend while the set is stable. */
  readonly hashed: boolean
  /**
   * `entries` may arrive in any order: hashing algorithms sort by name first, so the mapping
   * depends only on the set of (name, weight). `active` is the pool's live per-backend active
   * connection counts, indexed by `slot`; only load-aware algorithms read it. `previous` is the
   * picker this one replaces: a stateful algorithm may carry its position over (grpc-js's
   * round-robin starts after the endpoint it would have picked next), so a rebuild — a health
   * change, a slow-start step — does not restart the sequence. Pure algorithms ignore it.
   */
  createPicker(entries: readonly BalanceEntry[], active: Int32Array, previous?: Picker): Picker
}
