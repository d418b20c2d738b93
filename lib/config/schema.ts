/**
 * The JSON Schema of the config file and the README's settings table, both built from the
 * settings table so neither can drift from what the validator accepts. `npm run build` writes
 * them (scripts/gen-config.mjs); tests/config/schema.test.ts fails when a checked-in copy is stale.
 */
import { formatDuration } from './kinds.js'
import { SERVICE, TOP } from './settings.js'
import { kebab, sectionSchema, type AnySetting, type SectionKind } from './table.js'

export function buildSchema(): Record<string, unknown> {
  const top = sectionSchema(TOP) as { properties: Record<string, unknown> }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'l4lb.schema.json',
    title: 'l4lb configuration',
    description: 'The YAML file read by `l4lb -c FILE`. `l4lb check -c FILE` validates it with line numbers. Generated from lib/config/settings.ts: do not edit.',
    type: 'object',
    additionalProperties: false,
    required: ['services'],
    $defs: {
      duration: {
        description: 'A duration: a number with ms, s, m, h or d ("500ms", "5s", "1m30s"), or 0.',
        oneOf: [{ type: 'string', pattern: '^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+$' }, { const: 0 }, { const: '0' }],
      },
      port: { type: 'integer', minimum: 1, maximum: 65535 },
      service: sectionSchema(SERVICE),
    },
    properties: {
      services: { type: 'array', items: { $ref: '#/$defs/service' }, minItems: 1 },
      ...top.properties,
    },
  }
}

function rowsOf(r: AnySetting): readonly AnySetting[] | undefined {
  return (r.kind as Partial<SectionKind<readonly AnySetting[]>>).rows
}

function showDefault(r: AnySetting): string {
  if (r.default === undefined || rowsOf(r)) return ''
  if (Array.isArray(r.default) && r.default.length === 0) return ''
  if (r.kind.suffix === 'Ms' && typeof r.default === 'number') return formatDuration(r.default)
  return r.kind.show(r.default)
}

/** The README's table: one line per setting, flag and key side by side. */
export function settingsTable(): string {
  const lines = ['| flag | YAML key | type | default | what |', '|---|---|---|---|---|']
  const cell = (text: string): string => text.replace(/\|/g, '\\|')
  const walk = (rows: readonly AnySetting[], prefix: string): void => {
    for (const r of rows) {
      const inner = rowsOf(r)
      if (inner) {
        walk(inner, `${prefix}${r.key}.`)
        continue
      }
      const flag = r.flag ? `\`${r.short ? `${r.short}, ` : ''}${r.flag}\`` : ''
      const deprecated = r.deprecatedFlags.map((f) => ` (was \`${f}\`)`).join('')
      const shown = showDefault(r)
      lines.push(`| ${flag}${deprecated} | \`${prefix}${r.key}\` | ${r.kind.name.includes('\\|') ? r.kind.name : cell(r.kind.name)} | ${shown === '' ? '' : `\`${shown}\``} | ${cell(r.help)} |`)
      for (const o of (r.kind as { options?: readonly AnySetting[] }).options ?? []) {
        const spec = o.arg === undefined ? kebab(o.key) : `${kebab(o.key)}=N`
        const d = showDefault(o)
        lines.push(`| \`${r.short ?? r.flag} …,${spec}\` | \`${prefix}${r.key}[].${o.key}\` | ${cell(o.kind.name)} | ${d === '' ? '' : `\`${d}\``} | ${cell(o.help)} |`)
      }
    }
  }
  walk(SERVICE, 'services[].')
  walk(TOP, '')
  return lines.join('\n')
}

export const README_BEGIN = '<!-- settings table: generated from lib/config/settings.ts by `npm run build` -->'
export const README_END = '<!-- end of settings table -->'

/** The README with its settings table replaced (or unchanged when the markers are missing). */
export function withSettingsTable(readme: string): string {
  const begin = readme.indexOf(README_BEGIN)
  const end = readme.indexOf(README_END)
  if (begin < 0 || end < begin) return readme
  return `${readme.slice(0, begin + README_BEGIN.length)}\n${settingsTable()}\n${readme.slice(end)}`
}
