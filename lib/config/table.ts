/**
 * The machinery of the settings table (settings.ts): a row is one setting (YAML key, flag, kind,
 * default, help); a section is a mapping of rows (a service, its health check, a backend). The
 * validator, the commander options, the JSON Schema and the README table are all read from rows,
 * so a key and its flag cannot drift apart.
 */
import type { Kind, JsonSchema } from './kinds.js'
import { checkUnknownKeys, isMapping, type Path, type Problems, type Raw } from './problems.js'

/** `connectTimeout` → `connect-timeout` (the flag of a key, unless the row says otherwise). */
export type Kebab<S extends string> = S extends `${infer C}${infer R}` ? `${C extends Lowercase<C> ? C : `-${Lowercase<C>}`}${Kebab<R>}` : ''
/** `connect-timeout` → `connectTimeout` (commander's attribute name for a flag). */
export type Camel<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S
export type AttrOf<F extends string> = F extends `--${infer N}` ? Camel<N> : never

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/** The attribute commander stores a long flag's value under. */
export function attrOf(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z0-9])/gi, (_, c: string) => c.toUpperCase())
}

export interface Setting<K extends string = string, F extends string = string, V = unknown, A extends string = string> {
  /** The YAML key (camelCase). */
  readonly key: K
  /** The field of the typed config: the key plus the kind's unit suffix, unless the row names it. */
  readonly field: F
  /** `--flag`, or undefined for a YAML-only key. */
  readonly flag: string | undefined
  /** Type-level only: commander's attribute names for the flag and its deprecated spellings. */
  readonly attr?: A
  readonly short: string | undefined
  readonly arg: string | undefined
  readonly help: string
  readonly default: V
  readonly kind: Kind<V, string>
  readonly repeatable: boolean
  /** Set: a missing (or empty list) value is a problem with this text. */
  readonly required: string | undefined
  /** Old spellings that still work, with a warning: flags and YAML keys. */
  readonly deprecatedFlags: readonly string[]
  readonly deprecatedKeys: readonly string[]
  /** Checks that need the parsed value (ranges a kind cannot say). */
  readonly check: ((value: V, at: Path, problems: Problems) => void) | undefined
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySetting = Setting<string, string, any, string>

/** The typed object a section's rows produce. */
export type Values<R extends readonly AnySetting[]> = {
  readonly [S in R[number] as S['field']]: S extends Setting<string, string, infer V, string> ? V : never
}

/** Commander attribute names of every flag in a list of rows. */
export type FlagAttrs<R extends readonly AnySetting[]> = NonNullable<R[number]['attr']>

/** A row's value type: the kind's type, or undefined too when there is no default. */
type ValueOf<T, D, Req> = Req extends string ? T : [D] extends [undefined] ? T | undefined : undefined extends D ? T | undefined : T

interface RowOptions<T, D, F extends string, Fl extends string, Dep extends string, Req extends string | undefined> {
  readonly default?: D
  readonly help: string
  readonly field?: F
  /** Defaults to `--` + the key in kebab-case; null for a YAML-only key. */
  readonly flag?: Fl | null
  readonly short?: string
  readonly arg?: string
  readonly repeatable?: boolean
  readonly required?: Req
  readonly deprecatedFlag?: Dep
  readonly deprecatedKey?: string
  readonly check?: (value: ValueOf<T, D, Req>, at: Path, problems: Problems) => void
}

/** One setting. See the comment at the top of settings.ts for how to add one. */
export function row<
  const K extends string,
  T,
  S extends string,
  const D extends T | undefined = undefined,
  const F extends string = `${K}${S}`,
  const Fl extends string = `--${Kebab<K>}`,
  const Dep extends string = never,
  const Req extends string | undefined = undefined,
>(key: K, kind: Kind<T, S>, o: RowOptions<T, D, F, Fl, Dep, Req>): Setting<K, F, ValueOf<T, D, Req>, AttrOf<Fl> | AttrOf<Dep>> {
  return {
    key,
    field: (o.field ?? `${key}${kind.suffix}`) as F,
    flag: o.flag === null ? undefined : (o.flag ?? `--${kebab(key)}`),
    short: o.short,
    arg: kind.arg === undefined ? undefined : (o.arg ?? kind.arg),
    help: o.help,
    default: o.default as ValueOf<T, D, Req>,
    kind: kind as unknown as Kind<ValueOf<T, D, Req>, string>,
    repeatable: o.repeatable ?? false,
    required: o.required,
    deprecatedFlags: o.deprecatedFlag === undefined ? [] : [o.deprecatedFlag],
    deprecatedKeys: o.deprecatedKey === undefined ? [] : [o.deprecatedKey],
    check: o.check as ((value: ValueOf<T, D, Req>, at: Path, problems: Problems) => void) | undefined,
  }
}

/**
 * Reads a mapping by its rows: unknown keys (with a did-you-mean), then each row in table
 * order (missing → default; bad → a problem and the default), then the row's own check.
 */
export function readSection<const R extends readonly AnySetting[]>(rows: R, raw: Raw, at: Path, problems: Problems): Values<R> {
  const known = rows.flatMap((r) => [r.key, ...r.deprecatedKeys])
  checkUnknownKeys(raw, known, at, problems)
  const out: Record<string, unknown> = {}
  for (const r of rows) {
    let value = raw[r.key]
    let path: Path = [...at, r.key]
    for (const old of r.deprecatedKeys) {
      if (raw[old] === undefined) continue
      problems.warn(`${problems.keyOf([...at, old])} is deprecated: use ${problems.keyOf(path)}`)
      if (value === undefined) {
        value = raw[old]
        path = [...at, old]
      }
    }
    let parsed: unknown = r.default
    if (value !== undefined && value !== null) parsed = r.kind.parse(value, path, problems) ?? r.default
    if (r.required !== undefined && (value === undefined || value === null || (Array.isArray(parsed) && parsed.length === 0 && !(Array.isArray(value) && value.length > 0)))) {
      problems.add(path, undefined, r.required)
    }
    if (r.check && parsed !== undefined) r.check(parsed, path, problems)
    out[r.field] = parsed
  }
  return out as Values<R>
}

export interface SectionOptions<R extends readonly AnySetting[]> {
  /** A string in place of the mapping stands for this key (`admin: 127.0.0.1:9090`). */
  readonly shorthand?: R[number]['key']
  /** `false` in place of the mapping means "off" (the default). */
  readonly falseIsOff?: boolean
  readonly notMapping?: string
  /** Checks across keys of the section. */
  readonly check?: (values: Values<R>, at: Path, problems: Problems) => void
}

export interface SectionKind<R extends readonly AnySetting[]> extends Kind<Values<R>> {
  readonly rows: R
  readonly shorthand: string | undefined
}

/** A nested mapping (the health check, the admin endpoint) as a kind of its own. */
export function section<const R extends readonly AnySetting[]>(rows: R, o: SectionOptions<R> = {}): SectionKind<R> {
  return {
    name: 'mapping',
    arg: undefined,
    suffix: '',
    rows,
    shorthand: o.shorthand,
    get schema(): JsonSchema {
      const object = sectionSchema(rows)
      return o.shorthand ? { oneOf: [{ type: 'string', description: `the ${o.shorthand} key alone` }, object] } : object
    },
    parse(raw, at, problems) {
      if (raw === false && o.falseIsOff) return undefined
      let mapping = raw
      if (o.shorthand && typeof raw === 'string') mapping = { [o.shorthand]: raw }
      if (!isMapping(mapping)) return problems.add(at, raw, o.notMapping ?? 'must be a mapping')
      // A string shorthand names the section itself in errors: `admin "x"`, not `admin.listen "x"`.
      const values = readSection(rows, mapping, at, problems)
      o.check?.(values, at, problems)
      return values
    },
    show: () => '',
  }
}

export function sectionSchema(rows: readonly AnySetting[]): JsonSchema {
  const properties: Record<string, JsonSchema> = {}
  for (const r of rows) {
    properties[r.key] = { ...r.kind.schema, description: r.help }
    for (const old of r.deprecatedKeys) properties[old] = { ...r.kind.schema, description: `deprecated: use ${r.key}`, deprecated: true }
  }
  const required = rows.filter((r) => r.required !== undefined).map((r) => r.key)
  return { type: 'object', additionalProperties: false, ...(required.length > 0 ? { required } : {}), properties }
}

/** Defaults by field, for DEFAULTS. */
export function defaultsOf<const R extends readonly AnySetting[]>(rows: R): Values<R> {
  return Object.fromEntries(rows.map((r) => [r.field, r.default])) as Values<R>
}
