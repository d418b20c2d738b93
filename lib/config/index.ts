/**
 * Flags and the YAML file → one validated, typed `Config`. Nothing here opens a socket. Which
 * keys exist, their flags, kinds and defaults: settings.ts.
 */
import { formatHostPort } from '../address/index.js'
import { L4lbError, type ConfigError } from '../errors.js'
import { checkUnknownKeys, isMapping, Problems, type Path, type Raw } from './problems.js'
import { validateService } from './service.js'
import { SERVICE, TOP } from './settings.js'
import { attrOf, readSection, type AnySetting, type SectionKind } from './table.js'
import type { Config, FlagValues, ServiceConfig } from './types.js'

export * from './types.js'
export { DEFAULTS, SERVICE, HEALTH, BACKEND, LOG, ADMIN, TOP } from './settings.js'
export { parseDuration } from './duration.js'
export { parseSize, formatSize } from './size.js'
export { Problems, validateService, type Path, type KeyNamer } from './service.js'

/** The rows inside a section row (health, admin, log), or undefined for a plain value. */
function rowsOf(r: AnySetting): readonly AnySetting[] | undefined {
  return (r.kind as Partial<SectionKind<readonly AnySetting[]>>).rows
}

/** Every flag by the dotted key path it sets (`health.interval` → `--check-interval`). */
const FLAG_OF: ReadonlyMap<string, string> = (() => {
  const out = new Map<string, string>()
  const walk = (rows: readonly AnySetting[], prefix: string): void => {
    for (const r of rows) {
      const inner = rowsOf(r)
      if (inner) {
        walk(inner, `${prefix}${r.key}.`)
        // A section written as its shorthand string is named by the shorthand's flag.
        const shorthand = (r.kind as Partial<SectionKind<readonly AnySetting[]>>).shorthand
        const flag = inner.find((i) => i.key === shorthand)?.flag
        if (flag) out.set(`${prefix}${r.key}`, flag)
      } else if (r.flag) {
        out.set(`${prefix}${r.key}`, r.flag)
      }
    }
  }
  walk(SERVICE, '')
  walk(TOP, '')
  return out
})()

/** Flag names for config paths, so flag errors name the flag the user typed. */
function flagName(path: Path): string {
  const words = path.filter((p): p is string => typeof p === 'string')
  for (let n = words.length; n > 0; n--) {
    const flag = FLAG_OF.get(words.slice(0, n).join('.'))
    if (flag) return flag
  }
  return words.join('.')
}

/** `services[0].backends[1].address`, the name of a key in the YAML file. */
export function yamlKeyName(path: Path): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`
  return out
}

/** Every problem of one config at once (flags print the first, `l4lb check` all). */
export class ConfigErrors extends L4lbError {
  constructor(readonly errors: readonly ConfigError[]) {
    super('L4LB_ERR_CONFIG', errors.map((e) => e.message).join('\n'))
    this.name = 'ConfigErrors'
  }
}

export interface RawConfig {
  services?: unknown
  admin?: unknown
  log?: unknown
  resolvers?: unknown
  [key: string]: unknown
}

export interface ValidateOptions {
  /** The config came from flags: its one service's keys are flags, not `services[0]`. */
  readonly fromFlags?: boolean
  /** Warnings found before validation (deprecated flags). */
  readonly warnings?: readonly string[]
}

/**
 * Validates a whole raw config. Returns the Config or throws ConfigErrors listing every problem.
 * `keyOf` chooses how keys are named in messages (flags or YAML paths).
 */
export function validateConfig(raw: RawConfig, keyOf: (path: Path) => string, fallbackName = 'default', o: ValidateOptions = {}): Config {
  const problems = new Problems(keyOf)
  for (const w of o.warnings ?? []) problems.warn(w)
  const { services: servicesField, ...top } = raw
  checkUnknownKeys(raw, ['services', ...TOP.map((r): string => r.key)], [], problems)
  const servicesRaw = Array.isArray(servicesField) ? servicesField : []
  if (servicesRaw.length === 0) problems.add(['services'], undefined, 'at least one service is required')
  const services = servicesRaw
    .map((s, i) => validateService(s, o.fromFlags ? [] : ['services', i], servicesRaw.length > 1 ? `${fallbackName}${i}` : fallbackName, problems))
    .filter((s): s is ServiceConfig => s !== undefined)
  checkDuplicates(services, problems, o.fromFlags ?? false)
  const known = new Set(TOP.map((r): string => r.key))
  const values = readSection(TOP, Object.fromEntries(Object.entries(top).filter(([k]) => known.has(k))), [], problems)
  if (problems.list.length > 0) throw new ConfigErrors(problems.list)
  return { ...values, admin: values.admin as Config['admin'], services, warnings: problems.warnings }
}

function checkDuplicates(services: readonly ServiceConfig[], problems: Problems, fromFlags: boolean): void {
  const names = new Set<string>()
  const bound = new Map<string, string>()
  services.forEach((service, i) => {
    const base: Path = fromFlags ? [] : ['services', i]
    if (names.has(service.name)) problems.add([...base, 'name'], service.name, 'duplicate service name')
    names.add(service.name)
    service.listen.forEach((l, j) => {
      for (const protocol of service.protocols) {
        const key = `${protocol}/${formatHostPort(l.host, l.port)}`
        const other = bound.get(key)
        if (other !== undefined) problems.add([...base, 'listen', j], key.slice(protocol.length + 1), `duplicate listen address (${protocol}, also in service ${other})`)
        bound.set(key, service.name)
      }
    })
  })
}

/**
 * Flags → the raw shape a YAML file has, by the table: each flag's value lands at its key, a
 * deprecated spelling at the key it stands for (with a warning).
 */
function rawFromRows(rows: readonly AnySetting[], f: FlagValues, warnings: string[]): Raw {
  const values = f as Record<string, unknown>
  const out: Raw = {}
  for (const r of rows) {
    const inner = rowsOf(r)
    if (inner) {
      const nested = rawFromRows(inner, f, warnings)
      if (Object.keys(nested).length > 0) out[r.key] = nested
      continue
    }
    let value = r.flag ? values[attrOf(r.flag)] : undefined
    for (const old of r.deprecatedFlags) {
      const given = values[attrOf(old)]
      if (given === undefined) continue
      warnings.push(`${old} is deprecated: use ${r.flag}`)
      value ??= given
    }
    if (value !== undefined) out[r.key] = value
  }
  return out
}

/** The deprecated flags among `f`, one warning line each. */
export function deprecatedFlagWarnings(f: FlagValues): string[] {
  const warnings: string[] = []
  rawFromRows(SERVICE, f, warnings)
  rawFromRows(TOP, f, warnings)
  return warnings
}

/** The raw service the flags describe (keys only for flags that were given). */
function serviceFromFlags(f: FlagValues): Raw {
  return rawFromRows(SERVICE, f, [])
}

export function configFromFlags(f: FlagValues): Config {
  const warnings: string[] = []
  const raw: RawConfig = { services: [rawFromRows(SERVICE, f, warnings)], ...rawFromRows(TOP, f, warnings) }
  // --admin-token-file alone (no --admin) has nothing to protect: ignored, as it always was.
  if (isMapping(raw.admin) && raw.admin.listen === undefined) delete raw.admin
  return validateConfig(raw, flagName, 'default', { fromFlags: true, warnings })
}

/**
 * With `-c FILE`, flags override the file: top-level flags (log, admin, resolvers) always;
 * service flags only when the file has exactly one service (which service would they mean
 * otherwise?). A flag replaces one key; the rest of the file's mapping stays.
 */
export function applyFlagOverrides(raw: RawConfig, f: FlagValues): string | undefined {
  const top = rawFromRows(TOP, f, [])
  for (const [key, value] of Object.entries(top)) {
    const r = TOP.find((t) => t.key === key)
    const shorthand = r ? (r.kind as Partial<SectionKind<readonly AnySetting[]>>).shorthand : undefined
    const current = typeof raw[key] === 'string' && shorthand ? { [shorthand]: raw[key] } : raw[key]
    raw[key] = isMapping(value) && isMapping(current) ? { ...current, ...value } : value
  }
  const service = serviceFromFlags(f)
  if (Object.keys(service).length === 0) return undefined
  if (!Array.isArray(raw.services) || raw.services.length !== 1 || !isMapping(raw.services[0])) {
    return `service flags (${Object.keys(service).join(', ')}) need a config file with exactly one service`
  }
  const target = raw.services[0]
  for (const [key, value] of Object.entries(service)) {
    target[key] = isMapping(value) && isMapping(target[key]) ? { ...target[key], ...value } : value
  }
  return undefined
}
