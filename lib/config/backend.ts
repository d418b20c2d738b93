/**
 * Backends: `host:port[,weight=N][,backup][,check-port=N]` (the flag form, also accepted in
 * YAML), `{address, weight, ...}` (YAML), or `srv:_service._tcp.name`. The options after the
 * address are the BACKEND rows of the settings table, in either form.
 */
import { formatHostPort, parseHostPort, type HostPort } from '../address/index.js'
import type { Kind } from './kinds.js'
import { isMapping, problemOf, Problems, type Path, type Raw } from './problems.js'
import { kebab, readSection, sectionSchema, type AnySetting, type Values } from './table.js'

/** What every backend has besides its option rows. */
export interface BackendAddress {
  /** Canonical `host:port` as configured; the name hashing algorithms hash. */
  readonly name: string
  readonly host: string
  readonly port: number
  readonly family: 0 | 4 | 6
  /** `srv:_service._proto.name`: expands at load and on every refresh to the SRV answer's targets. */
  readonly srv: boolean
}

export type Backend<R extends readonly AnySetting[]> = BackendAddress & Values<R>

/** `weight=N`, `backup`, `check-port=N` for the rows; camelCase spellings are accepted too. */
export function parseBackendSpec(text: string, rows: readonly AnySetting[]): Raw | string {
  const [address, ...opts] = text.split(',').map((s) => s.trim())
  const out: Raw = { address }
  for (const opt of opts) {
    const [k, v] = opt.split('=', 2) as [string, string | undefined]
    const r = rows.find((r) => r.key === k || kebab(r.key) === k)
    if (r && (r.arg === undefined ? v === undefined : v !== undefined)) out[r.key] = v ?? true
    else return `unknown backend option "${opt}" (use ${rows.map((r) => (r.arg === undefined ? kebab(r.key) : `${kebab(r.key)}=N`)).join(', ')})`
  }
  return out
}

export interface BackendsKind<R extends readonly AnySetting[]> extends Kind<readonly Backend<R>[]> {
  /** The option rows after the address (for the README table). */
  readonly options: R
}

export function backendsKind<const R extends readonly AnySetting[]>(rows: R, o: { weightKey: R[number]['key'] }): BackendsKind<R> {
  const one = (raw: unknown, path: Path, problems: Problems): Backend<R> | undefined => {
    let spec: Raw
    const flagForm = typeof raw === 'string'
    if (typeof raw === 'string') {
      const parsed = parseBackendSpec(raw, rows)
      if (typeof parsed === 'string') return problems.add(path, raw, parsed)
      spec = parsed
    } else if (isMapping(raw)) {
      spec = raw
    } else {
      return problems.add(path, raw, `must be "host:port" or {address, ${rows.map((r) => r.key).join(', ')}}`)
    }
    const { address: addressText, ...options } = spec
    const addressPath = flagForm ? path : [...path, 'address']
    if (typeof addressText !== 'string' || addressText === '') return problems.add(addressPath, addressText ?? raw, 'backend address must be "host:port"')
    // In the flag form the user typed one string: errors quote all of it, not the piece inside.
    const sub = flagForm ? new Problems(problems.keyOf) : problems
    let address: BackendAddress | undefined
    if (addressText.startsWith('srv:')) {
      const name = addressText.slice(4).toLowerCase()
      if (!/^_[a-z0-9-]+\._(tcp|udp)\.[a-z0-9_.-]+$/.test(name)) return problems.add(addressPath, flagForm ? raw : addressText, 'SRV backends look like "srv:_service._tcp.example.com"')
      if (options[o.weightKey] !== undefined) sub.add(flagForm ? path : [...path, o.weightKey], raw, 'an SRV backend takes its weights from the SRV records')
      address = { name: addressText.toLowerCase(), host: name, port: 0, family: 0, srv: true }
    } else {
      let hp: HostPort
      try {
        hp = parseHostPort(addressText)
      } catch (err) {
        return problems.add(addressPath, flagForm ? raw : addressText, problemOf(err))
      }
      address = { name: formatHostPort(hp.host, hp.port), host: hp.host, port: hp.port, family: hp.family, srv: false }
    }
    const values = readSection(rows, options, flagForm ? [] : path, sub)
    if (sub !== problems) for (const e of sub.list) problems.add(path, raw, e.problem)
    return { ...address, ...values }
  }
  return {
    options: rows,
    name: 'list of backends',
    arg: `<host:port${rows.map((r) => (r.arg === undefined ? `[,${kebab(r.key)}]` : `[,${kebab(r.key)}=N]`)).join('')}>`,
    suffix: '',
    get schema() {
      const object = sectionSchema([{ key: 'address', required: 'x', kind: { schema: { type: 'string' } }, help: 'host:port, [v6]:port or srv:_service._tcp.name', deprecatedKeys: [] } as unknown as AnySetting, ...rows])
      return {
        type: 'array',
        minItems: 1,
        items: { oneOf: [{ type: 'string', description: `host:port${rows.map((r) => (r.arg === undefined ? `[,${kebab(r.key)}]` : `[,${kebab(r.key)}=N]`)).join('')}, [v6]:port, or srv:_service._tcp.name` }, object] },
      }
    },
    parse(raw, at, problems) {
      const items = Array.isArray(raw) ? raw : [raw]
      const paths = items.map((_, i) => (Array.isArray(raw) ? [...at, i] : at))
      const out: Backend<R>[] = []
      const seen = new Set<string>()
      items.forEach((item, i) => {
        const b = one(item, paths[i]!, problems)
        if (!b) return
        if (seen.has(b.name)) problems.add(paths[i]!, b.name, 'duplicate backend')
        seen.add(b.name)
        out.push(b)
      })
      if (out.length > 0 && out.every((b) => (b as { backup?: boolean }).backup)) problems.add(at, undefined, 'at least one backend must not be a backup')
      return out
    },
    show: () => '',
  }
}
