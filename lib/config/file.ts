/**
 * The YAML config file: parsed with `yaml` (kept with its line numbers so every problem prints
 * as `FILE:LINE: key: message`), then validated by the same code as flags.
 */
import { readFileSync } from 'node:fs'
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document } from 'yaml'
import { L4lbError, type ConfigError } from '../errors.js'
import { ConfigErrors, validateConfig, yamlKeyName, type RawConfig } from './index.js'
import type { Path } from './service.js'
import type { Config } from './types.js'

export interface FileProblem {
  readonly line: number
  readonly message: string
}

/** Thrown when a config file cannot be used; `problems` has one entry per error, with lines. */
export class ConfigFileError extends L4lbError {
  constructor(readonly file: string, readonly problems: readonly FileProblem[]) {
    super('L4LB_ERR_CONFIG_FILE', problems.map((p) => `${file}:${p.line}: ${p.message}`).join('\n'))
    this.name = 'ConfigFileError'
  }
}

export interface LoadedFile {
  readonly raw: RawConfig
  /** Maps a problem's path to its line in the file. */
  lineOf(path: Path): number
}

export function readConfigFile(file: string): LoadedFile {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigFileError(file, [{ line: 0, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }])
  }
  return parseConfigText(file, text)
}

export function parseConfigText(file: string, text: string): LoadedFile {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigFileError(
      file,
      doc.errors.map((e) => ({ line: lineCounter.linePos(e.pos[0]).line, message: `YAML: ${e.message.split('\n')[0]}` })),
    )
  }
  const raw = (doc.toJS() ?? {}) as unknown
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigFileError(file, [{ line: 1, message: 'the file must be a mapping with a "services" list' }])
  }
  return { raw: raw as RawConfig, lineOf: (path) => lineOfPath(doc, lineCounter, path) }
}

function lineOfPath(doc: Document, lines: LineCounter, path: Path): number {
  // Walk down as far as the path exists; a missing key points at its parent mapping.
  for (let n = path.length; n > 0; n--) {
    const parent = n > 1 ? doc.getIn(path.slice(0, n - 1), true) : doc.contents
    const last = path[n - 1]
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === last)
      const range = pair && isScalar(pair.key) ? pair.key.range : undefined
      if (range) return lines.linePos(range[0]).line
    }
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined
    if (node?.range) return lines.linePos(node.range[0]).line
  }
  return 1
}

/**
 * Loads and validates a config file; `overrides` (from flags) are merged first. Throws
 * ConfigFileError listing every problem with its line.
 */
export function loadConfigFile(file: string, overrides?: (raw: RawConfig) => void): Config {
  const loaded = readConfigFile(file)
  const problems: FileProblem[] = []
  overrides?.(loaded.raw)
  try {
    return validateConfig(loaded.raw, yamlKeyName, 'service')
  } catch (err) {
    if (!(err instanceof ConfigErrors)) throw err
    for (const e of err.errors) problems.push({ line: loaded.lineOf(e.path), message: fileMessage(e) })
    problems.sort((a, b) => a.line - b.line)
    throw new ConfigFileError(file, problems)
  }
}

function fileMessage(e: ConfigError): string {
  return e.value === undefined ? `${e.key}: ${e.problem}` : `${e.key}: ${JSON.stringify(e.value)}: ${e.problem}`
}
