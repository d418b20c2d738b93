/**
 * How validation reports: every problem becomes a ConfigError naming the key as the user wrote
 * it (`--connect-timeout` or `services[0].connectTimeout`), the value and what is wrong, and
 * carries its path so `l4lb check` can print `FILE:LINE:`. Problems are collected, not thrown,
 * so a file's every mistake is listed at once.
 */
import { ConfigError, L4lbError } from '../errors.js'

export type Path = readonly (string | number)[]
/** Turns a path inside the raw config into the key name the user knows. */
export type KeyNamer = (path: Path) => string

export type Raw = Record<string, unknown>

/** Collects problems so `l4lb check` can print all of them; flags print the first. */
export class Problems {
  readonly list: ConfigError[] = []
  /** Deprecated spellings that still work: one line each, logged at start. */
  readonly warnings: string[] = []
  constructor(readonly keyOf: KeyNamer) {}
  add(path: Path, value: unknown, problem: string): undefined {
    this.list.push(new ConfigError(this.keyOf(path), value, problem, path))
    return undefined
  }
  warn(message: string): void {
    if (!this.warnings.includes(message)) this.warnings.push(message)
  }
}

/** Unknown keys get a did-you-mean when one known key is within two edits. */
export function checkUnknownKeys(raw: Raw, known: readonly string[], path: Path, problems: Problems): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      const near = known.find((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2)
      problems.add([...path, key], undefined, near ? `unknown key (did you mean "${near}"?)` : `unknown key (known: ${known.join(', ')})`)
    }
  }
}

/** Levenshtein distance, for "did you mean" on mistyped keys and subcommands. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}

/** An error's message without the quoted input (the caller names key and value itself). */
export function problemOf(err: unknown): string {
  if (err instanceof L4lbError) return err.message.replace(/^"[^"]*": /, '')
  return String(err)
}

export function isMapping(raw: unknown): raw is Raw {
  return raw !== null && typeof raw === 'object' && !Array.isArray(raw)
}
