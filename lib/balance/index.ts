// TEMPORARY stub until the balance branch lands: every name maps to a modulo picker.
import type { Algorithm, BalanceEntry, Picker } from './types.js'
export type { Algorithm, BalanceEntry, Picker } from './types.js'
export { keyHash, murmur3, fmix32 } from './hash.js'

const modulo: Algorithm = {
  hashed: true,
  createPicker(entries: readonly BalanceEntry[]): Picker {
    const sorted = [...entries.keys()].sort((a, b) => (entries[a]!.name < entries[b]!.name ? -1 : 1))
    return {
      pick(hash: number, exclude?: ReadonlySet<number> | null): number {
        const n = sorted.length
        for (let i = 0; i < n; i++) {
          const idx = sorted[(hash + i) % n]!
          if (!exclude || !exclude.has(idx)) return idx
        }
        return -1
      },
    }
  },
}

export const algorithms = {
  maglev: modulo,
  ring: modulo,
  'ip-hash': modulo,
  'round-robin': modulo,
  'least-conn': modulo,
  'random-two': modulo,
} satisfies Record<string, Algorithm>

export type AlgorithmName = keyof typeof algorithms

export function resolveAlgorithm(name: string): Algorithm | undefined {
  const key = name === 'consistent' ? 'maglev' : name
  return Object.hasOwn(algorithms, key) ? algorithms[key as AlgorithmName] : undefined
}

export const algorithmNames: readonly string[] = ['consistent', ...Object.keys(algorithms)]
