/**
 * What a pool picks from: one immutable snapshot of its usable backends and their pickers
 * (grpc-js's picker, "replaced every time the load balancer changes state"). The pool builds a
 * new one on every change and swaps one reference; a build that would see exactly what the last
 * one saw returns the last one, so round-robin keeps its place and nobody is told of a rebuild.
 */
import type { Algorithm, BalanceEntry, PickData, Picker } from '../balance/index.js'
import type { Backend } from './backend.js'

/** What a data plane needs to pick as this pool does: the usable backends and the picker's data. */
export interface PoolPickData {
  /** Indexed like the picker's entries: the address dialed, the backend's counter slot and its maxConns. */
  readonly entries: ReadonlyArray<{ readonly address: string; readonly port: number; readonly slot: number; readonly maxConns: number }>
  readonly pick: PickData
  /**
   * The usable backups while primaries serve, with their own picker's data: where a connection
   * that tried every primary goes (pick's redispatch). Absent when there are none.
   */
  readonly backup?: { readonly entries: PoolPickData['entries']; readonly pick: PickData }
}

export interface PickInputs {
  readonly algorithm: Algorithm
  /** The pool's current backends, in config order. */
  readonly backends: readonly Backend[]
  /** A backend's weight for the picker now (scaled, ramping). */
  readonly weightOf: (backend: Backend) => number
  /** The live counts least-conn and P2C read (the pool replaces the array when it grows). */
  readonly active: Int32Array
}

export class PickSet {
  /** Backends that new connections can go to (primaries, or backups when no primary is usable). */
  readonly usableCount: number
  readonly usingBackups: boolean
  readonly #picker: Picker
  readonly #pickable: readonly Backend[]
  /** Usable backups while primaries serve: the redispatch target once a connection has tried every primary. */
  readonly #backupPicker: Picker | null
  readonly #backups: readonly Backend[]
  /** What the pickers were built from (ids, effective weights, counts array). */
  readonly #signature: string
  readonly #active: Int32Array

  /**
   * The snapshot for `inputs`: `previous` itself when its pickers saw the same entries and
   * counts (unless `fresh`: the algorithm or the weight scale changed under it).
   */
  static build(inputs: PickInputs, previous: PickSet | undefined, fresh: boolean): PickSet {
    const primaries = inputs.backends.filter((b) => b.usable && !b.backup)
    const usableBackups = inputs.backends.filter((b) => b.usable && b.backup)
    const pickable = primaries.length > 0 ? primaries : usableBackups
    const backups = primaries.length > 0 ? usableBackups : []
    const entries = pickable.map((b) => ({ name: b.name, weight: inputs.weightOf(b), slot: b.id }))
    const backupEntries = backups.map((b) => ({ name: b.name, weight: inputs.weightOf(b), slot: b.id }))
    const signature = `${signatureOf(entries)}|${signatureOf(backupEntries)}`
    // A picker on a replaced counts array would read counts nobody updates any more.
    if (previous && !fresh && previous.#signature === signature && previous.#active === inputs.active) return previous
    const { algorithm, active } = inputs
    const backupPicker = backupEntries.length > 0 ? algorithm.createPicker(backupEntries, active, previous === undefined ? undefined : (previous.#backupPicker ?? undefined)) : null
    const picker = algorithm.createPicker(entries, active, previous === undefined ? undefined : previous.#picker)
    return new PickSet(picker, pickable, backupPicker, backups, signature, active, primaries.length === 0 && usableBackups.length > 0)
  }

  private constructor(
    picker: Picker, pickable: readonly Backend[], backupPicker: Picker | null, backups: readonly Backend[],
    signature: string, active: Int32Array, usingBackups: boolean,
  ) {
    this.#picker = picker
    this.#pickable = pickable
    this.#backupPicker = backupPicker
    this.#backups = backups
    this.#signature = signature
    this.#active = active
    this.usableCount = pickable.length
    this.usingBackups = usingBackups
  }

  /** See Pool.pick. */
  pick(hash: number, tried: ReadonlySet<number> | null | undefined, redispatch: boolean): Backend | undefined {
    const found = pickFrom(this.#picker, this.#pickable, hash, tried)
    if (found !== undefined || !tried || !redispatch || this.#backupPicker === null) return found
    return pickFrom(this.#backupPicker, this.#backups, hash, tried)
  }

  exportPickData(): PoolPickData {
    const data = { entries: entriesOf(this.#pickable), pick: this.#picker.exportPickData!() }
    if (this.#backupPicker === null) return data
    return { ...data, backup: { entries: entriesOf(this.#backups), pick: this.#backupPicker.exportPickData!() } }
  }
}

/** One pick over `pickable` that leaves out `tried` and steers around recent refusals. */
function pickFrom(picker: Picker, pickable: readonly Backend[], hash: number, tried: ReadonlySet<number> | null | undefined): Backend | undefined {
  let exclude: Set<number> | null = null
  if (tried && tried.size > 0) {
    exclude = new Set()
    for (let i = 0; i < pickable.length; i++) if (tried.has(pickable[i]!.id)) exclude.add(i)
  }
  let index = picker.pick(hash, exclude)
  if (index < 0) return undefined
  // Steer around a backend that refused a moment ago, but never refuse a client for it:
  // if it is the only choice left, it is still tried.
  const avoidUntil = pickable[index]!.avoidUntil
  if (avoidUntil !== 0 && avoidUntil > Date.now()) {
    exclude ??= new Set()
    const now = Date.now()
    for (let i = 0; i < pickable.length; i++) if (pickable[i]!.avoidUntil > now) exclude.add(i)
    const other = picker.pick(hash, exclude)
    if (other >= 0) index = other
  }
  return pickable[index]
}

function entriesOf(backends: readonly Backend[]): PoolPickData['entries'] {
  return backends.map((b) => ({ address: b.address, port: b.port, slot: b.id, maxConns: b.maxConns }))
}

function signatureOf(entries: readonly BalanceEntry[]): string {
  let out = ''
  for (const e of entries) out += `${e.slot}:${e.weight},`
  return out
}
