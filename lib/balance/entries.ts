/**
 * What every algorithm checks and how every algorithm orders its entries, written once so the six
 * files cannot drift apart on either.
 */
import { BalanceError } from '../errors.js'
import type { BalanceEntry } from './types.js'

/** The weight range of the contract (types.ts); a 0 weight is "drain", which the pool handles. */
export const MIN_WEIGHT = 1
export const MAX_WEIGHT = 256

/**
 * Throws a BalanceError (L4LB_ERR_BALANCE) naming the algorithm and the entry when the input breaks the contract:
 * a bad weight, an empty or duplicate name, or (when `active` is given) a slot outside it. Config validates what
 * users type; this catches a caller's bug before it becomes a silently skewed table.
 * Duplicate names are refused because two entries with one name hash identically, so which of
 * them owns a key would depend on input order, the one thing hashing must never depend on.
 */
export function validateEntries(
  algorithm: string,
  entries: readonly BalanceEntry[],
  active?: Int32Array,
): void {
  const seen = new Set<string>()
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]
    if (entry === undefined) throw new BalanceError(algorithm, `entries[${i}] is missing`)
    const { name, weight, slot } = entry
    if (typeof name !== 'string' || name.length === 0) {
      throw new BalanceError(algorithm, `entries[${i}] has an empty name`)
    }
    if (seen.has(name)) throw new BalanceError(algorithm, `backend ${name} is listed twice`)
    seen.add(name)
    if (!Number.isInteger(weight) || weight < MIN_WEIGHT || weight > MAX_WEIGHT) {
      throw new BalanceError(algorithm, `backend ${name} weight ${String(weight)} is not an integer ${MIN_WEIGHT}..${MAX_WEIGHT}`,
      )
    }
    if (active && (!Number.isInteger(slot) || slot < 0 || slot >= active.length)) {
      throw new BalanceError(algorithm, `backend ${name} slot ${String(slot)} is outside the active array (length ${active.length})`,
      )
    }
  }
}

/**
 * Entry indices sorted by name. Names compare by UTF-16 code unit (`<`), never `localeCompare`,
 * whose order depends on the ICU build and locale, so every machine sorts alike.
 */
export function orderByName(entries: readonly BalanceEntry[]): Int32Array {
  const order = Int32Array.from(entries.keys())
  order.sort((a, b) => {
    const nameA = entries[a]?.name ?? ''
    const nameB = entries[b]?.name ?? ''
    return nameA < nameB ? -1 : nameA > nameB ? 1 : 0
  })
  return order
}

/** How many distinct indices in `exclude` name a real entry (callers may pass stale indices). */
export function countExcluded(exclude: ReadonlySet<number>, entryCount: number): number {
  let count = 0
  for (const index of exclude) {
    if (Number.isInteger(index) && index >= 0 && index < entryCount) count++
  }
  return count
}

export function greatestCommonDivisor(a: number, b: number): number {
  let x = a
  let y = b
  while (y !== 0) {
    const rest = x % y
    x = y
    y = rest
  }
  return x
}
