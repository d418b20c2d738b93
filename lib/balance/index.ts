/**
 * The one registry of balancing algorithms and the only module the rest of l4lb imports from
 * balance/. Adding an algorithm is one file, one line here and one test file; config validates
 * `--balance` against `algorithmNames`, so the name is then accepted everywhere.
 */
import { ipHash } from './ip-hash.js'
import { leastConn } from './least-conn.js'
import { maglev } from './maglev.js'
import { randomTwo } from './random-two.js'
import { ring } from './ring.js'
import { roundRobin } from './round-robin.js'
import type { Algorithm } from './types.js'

export type { Algorithm, BalanceEntry, PickData, Picker } from './types.js'
export { fmix32, keyHash, murmur3, SEED_KEY, SEED_OFFSET, SEED_SKIP } from './hash.js'
export { MAX_WEIGHT, MIN_WEIGHT } from './entries.js'
export {
  buildMaglevTable,
  createMaglevPicker,
  DEFAULT_TABLE_SIZE,
  isPrime,
  MAX_TABLE_SIZE,
  type MaglevOptions,
} from './maglev.js'
export { MAX_RING_POINTS, POINTS_PER_WEIGHT } from './ring.js'

export const algorithms = {
  maglev,
  ring,
  'ip-hash': ipHash,
  'round-robin': roundRobin,
  'least-conn': leastConn,
  'random-two': randomTwo,
} satisfies Record<string, Algorithm>

export type AlgorithmName = keyof typeof algorithms

/** Names users may type that stand for a registered algorithm. `consistent` is the default. */
export const algorithmAliases = { consistent: 'maglev' } as const satisfies Record<string, AlgorithmName>

export type BalanceName = AlgorithmName | keyof typeof algorithmAliases

/** Every name `--balance` accepts, aliases first (for help text and config errors). */
export const algorithmNames: readonly BalanceName[] = [
  ...(Object.keys(algorithmAliases) as Array<keyof typeof algorithmAliases>),
  ...(Object.keys(algorithms) as AlgorithmName[]),
]

export function isBalanceName(name: string): name is BalanceName {
  return Object.hasOwn(algorithms, name) || Object.hasOwn(algorithmAliases, name)
}

/** The registered name a user's name stands for, or undefined when it is not one. */
export function resolveAlgorithmName(name: string): AlgorithmName | undefined {
  if (Object.hasOwn(algorithmAliases, name)) return algorithmAliases[name as keyof typeof algorithmAliases]
  if (Object.hasOwn(algorithms, name)) return name as AlgorithmName
  return undefined
}

export function resolveAlgorithm(name: string): Algorithm | undefined {
  const resolved = resolveAlgorithmName(name)
  return resolved === undefined ? undefined : algorithms[resolved]
}
