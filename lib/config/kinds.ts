/**
 * The value kinds a setting can have. A kind knows how to parse what a user typed (a flag's
 * string or a YAML value), how to say what is wrong with it, its JSON Schema, its flag argument
 * and how to print a default. Settings (settings.ts) are rows of key + kind + default + help.
 */
import { CidrList, formatHostPort, parseHostPort, parsePort, type HostPort } from '../address/index.js'
import { parseDuration } from './duration.js'
import { formatSize, parseSize } from './size.js'
import { problemOf, type Path, type Problems } from './problems.js'

export type JsonSchema = { readonly [key: string]: unknown }

export interface Kind<T, S extends string = ''> {
  /** The type as the README's settings table names it. */
  readonly name: string
  /** commander's argument placeholder; undefined makes the flag a switch (true when given). */
  readonly arg: string | undefined
  /** The typed field is the key plus this, so units stay in names: `connectTimeout` → `connectTimeoutMs`. */
  readonly suffix: S
  readonly schema: JsonSchema
  /**
   * `raw` is never undefined or null (those mean "use the default"). Adds its own problems (it
   * knows the paths of list items) and returns undefined when the value is unusable.
   */
  parse(raw: unknown, at: Path, problems: Problems): T | undefined
  /** A value as the README and `--help` print it. */
  show(value: T): string
}

const showString = (value: unknown): string => (value === undefined ? '' : String(value))

export function duration(o: { min?: number; tooSmall?: string } = {}): Kind<number, 'Ms'> {
  return {
    name: 'duration',
    arg: '<duration>',
    suffix: 'Ms',
    schema: { $ref: '#/$defs/duration' },
    parse(raw, at, problems) {
      if (raw === 0) return check(0)
      if (typeof raw !== 'string') return problems.add(at, raw, 'must be a duration with a unit, e.g. "5s"')
      const ms = parseDuration(raw)
      return typeof ms === 'number' ? check(ms) : problems.add(at, raw, ms)
      function check(ms: number): number | undefined {
        if (o.min !== undefined && ms < o.min) return problems.add(at, raw, o.tooSmall ?? `must be at least ${formatDuration(o.min)}`)
        return ms
      }
    },
    show: (ms) => formatDuration(ms),
  }
}

/** 30000 → "30s": the largest unit that divides the value. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0'
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

export function integer(min: number, max: number): Kind<number> {
  return {
    name: `integer ${min}..${max}`,
    arg: '<n>',
    suffix: '',
    schema: { type: 'integer', minimum: min, maximum: max },
    parse(raw, at, problems) {
      const n = typeof raw === 'string' && /^-?[0-9]+$/.test(raw.trim()) ? Number(raw) : raw
      if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) return problems.add(at, raw, `must be a whole number from ${min} to ${max}`)
      return n
    },
    show: showString,
  }
}

export function size(min: number, max: number): Kind<number, 'Bytes'> {
  return {
    name: 'size',
    arg: '<size>',
    suffix: 'Bytes',
    schema: { type: ['string', 'integer'], description: 'bytes, or a number with KiB, MiB or GiB (e.g. "4MiB")' },
    parse(raw, at, problems) {
      if (typeof raw !== 'string' && typeof raw !== 'number') return problems.add(at, raw, 'must be a size, e.g. "4MiB", "512KiB" or bytes')
      const n = parseSize(String(raw))
      if (typeof n === 'string') return problems.add(at, raw, n)
      if (n < min || n > max) return problems.add(at, raw, `must be from ${min} to ${max} bytes`)
      return n
    },
    show: (bytes) => formatSize(bytes),
  }
}

export function boolean(): Kind<boolean> {
  return {
    name: 'boolean',
    arg: undefined,
    suffix: '',
    schema: { type: 'boolean' },
    parse(raw, at, problems) {
      if (typeof raw === 'boolean') return raw
      if (raw === 'true') return true
      if (raw === 'false') return false
      return problems.add(at, raw, 'must be true or false')
    },
    show: showString,
  }
}

/**
 * One of a fixed list of names. `choices` may be a function so a registry (balance algorithms,
 * check types) is read when it is used, never copied. `also` maps extra YAML values (`false`).
 */
export function oneOf<const C extends string>(choices: readonly C[] | (() => readonly C[]), o: { problem?: string; also?: ReadonlyMap<unknown, C>; arg?: string } = {}): Kind<C> {
  const list = (): readonly C[] => (typeof choices === 'function' ? choices() : choices)
  return {
    get name() {
      return list().join(' \\| ')
    },
    get arg() {
      return o.arg ?? `<${list().join('|')}>`
    },
    suffix: '',
    get schema() {
      return { enum: [...list(), ...(o.also ? o.also.keys() : [])] }
    },
    parse(raw, at, problems) {
      const mapped = o.also?.get(raw)
      if (mapped !== undefined) return mapped
      if (typeof raw === 'string' && (list() as readonly string[]).includes(raw)) return raw as C
      return problems.add(at, raw, o.problem ?? `must be one of ${list().join(', ')}`)
    },
    show: showString,
  }
}

export function text(o: { pattern?: RegExp; problem?: string; arg?: string } = {}): Kind<string> {
  return {
    name: 'string',
    arg: o.arg ?? '<text>',
    suffix: '',
    schema: o.pattern ? { type: 'string', pattern: o.pattern.source } : { type: 'string' },
    parse(raw, at, problems) {
      if (typeof raw !== 'string' || (o.pattern && !o.pattern.test(raw))) return problems.add(at, raw, o.problem ?? 'must be a string')
      return raw
    },
    show: (value) => (value === undefined ? '' : JSON.stringify(value)),
  }
}

export function port(): Kind<number> {
  return {
    name: 'port',
    arg: '<port>',
    suffix: '',
    schema: { $ref: '#/$defs/port' },
    parse(raw, at, problems) {
      try {
        return parsePort(String(raw))
      } catch {
        return problems.add(at, raw, 'port must be 1-65535')
      }
    },
    show: showString,
  }
}

/**
 * Check payloads: `0x0000000804d2162f` is hex; anything else is text with \r \n \t \0 \xHH escapes.
 */
export function parseBytes(text: string): Buffer | string {
  if (/^0x/i.test(text)) {
    const hex = text.slice(2)
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(hex)) return 'hex needs an even number of 0-9a-f digits after 0x'
    return Buffer.from(hex, 'hex')
  }
  const out = text.replace(/\\(x[0-9a-fA-F]{2}|[rnt0\\])/g, (_, esc: string) => {
    if (esc[0] === 'x') return String.fromCharCode(parseInt(esc.slice(1), 16))
    return ({ r: '\r', n: '\n', t: '\t', '0': '\0', '\\': '\\' } as Record<string, string>)[esc]!
  })
  return Buffer.from(out, 'latin1')
}

export function bytes(): Kind<Buffer> {
  return {
    name: 'bytes',
    arg: '<bytes>',
    suffix: '',
    schema: { type: 'string', description: 'text with \\r \\n \\t \\0 \\xHH escapes, or 0x-prefixed hex' },
    parse(raw, at, problems) {
      if (typeof raw !== 'string' || raw === '') return problems.add(at, raw, 'must be a non-empty string or 0x-prefixed hex')
      const b = parseBytes(raw)
      return typeof b === 'string' ? problems.add(at, raw, b) : b
    },
    show: (value) => (value === undefined ? '' : value.toString('latin1')),
  }
}

/**
 * One value or a list of them (a repeatable flag gives a list). Items are checked one by one,
 * each at its own path, and bad items are dropped. `empty` makes an empty result undefined.
 */
export function list<T>(item: Kind<T, ''>, o: { minItems?: number } = {}): Kind<readonly T[]> {
  return {
    name: `list of ${item.name}`,
    arg: item.arg,
    suffix: '',
    schema: { oneOf: [item.schema, { type: 'array', items: item.schema, ...(o.minItems ? { minItems: o.minItems } : {}) }] },
    parse(raw, at, problems) {
      const items = Array.isArray(raw) ? raw : [raw]
      const out: T[] = []
      items.forEach((r, i) => {
        const v = item.parse(r, Array.isArray(raw) ? [...at, i] : at, problems)
        if (v !== undefined) out.push(v)
      })
      return out
    },
    show: (value) => (value === undefined ? '' : value.map((v) => item.show(v)).join(', ')),
  }
}

/** A listen address: `[host]:port`, `:port` for every address, port 0 for any free port. */
export function listenAddress(): Kind<HostPort> {
  return {
    name: '[host]:port',
    arg: '<[host]:port>',
    suffix: '',
    schema: { type: 'string' },
    parse(raw, at, problems) {
      if (typeof raw !== 'string') return problems.add(at, raw, 'must be "[host]:port"')
      try {
        const hp = parseHostPort(raw.trim(), '::', true)
        if (hp.family === 0 && hp.host !== 'localhost') return problems.add(at, raw, 'listen on an IP address (or ":port" for all)')
        return hp.family === 0 ? { host: '127.0.0.1', port: hp.port, family: 4 } : hp
      } catch (err) {
        return problems.add(at, raw, problemOf(err))
      }
    },
    show: (hp) => formatHostPort(hp.host, hp.port),
  }
}

/** CIDR blocks, comma-separated and/or a list; each is checked. */
export function cidrs(): Kind<readonly string[]> {
  return {
    name: 'list of CIDR',
    arg: '<cidr,...>',
    suffix: '',
    schema: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    parse(raw, at, problems) {
      const out = (Array.isArray(raw) ? raw : [raw]).map(String).flatMap((c) => c.split(',')).map((c) => c.trim()).filter((c) => c !== '')
      return out.filter((cidr) => {
        try {
          new CidrList([cidr])
          return true
        } catch (err) {
          return problems.add(at, cidr, problemOf(err)) ?? false
        }
      })
    },
    show: (value) => (value === undefined ? '' : value.join(',')),
  }
}

/** A kind written out in full, for the few settings no generic kind fits. */
export function custom<T, S extends string = ''>(kind: Omit<Kind<T, S>, 'suffix' | 'show'> & { suffix?: S; show?: (value: T) => string }): Kind<T, S> {
  return { ...kind, suffix: (kind.suffix ?? '') as S, show: kind.show ?? showString }
}
