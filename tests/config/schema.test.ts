import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { loadConfigFile } from '../../lib/config/file.js'
import { buildSchema, README_BEGIN, README_END, settingsTable } from '../../lib/config/schema.js'
import { ROOT } from '../helpers/index.js'
import { algorithmNames } from '../../lib/balance/index.js'
import { CHECK_TYPES } from '../../lib/health/options.js'

const stale = 'is stale: run `npm run build` and commit conf/l4lb.schema.json and README.md'

t.test('conf/l4lb.schema.json is what the settings table generates', async (t) => {
  const onDisk = JSON.parse(readFileSync(path.join(ROOT, 'conf', 'l4lb.schema.json'), 'utf8')) as unknown
  t.same(onDisk, buildSchema(), `conf/l4lb.schema.json ${stale}`)
})

t.test("the README's settings table is what the settings table generates", async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const begin = readme.indexOf(README_BEGIN)
  const end = readme.indexOf(README_END)
  t.ok(begin >= 0 && end > begin, 'README has the settings table markers')
  t.equal(readme.slice(begin + README_BEGIN.length, end).trim(), settingsTable(), `the README settings table ${stale}`)
})

/** Every object in the schema, wherever it sits, with its JSON pointer. */
function objects(node: unknown, at: string, out: Array<[string, Record<string, unknown>]>): typeof out {
  if (Array.isArray(node)) node.forEach((n, i) => objects(n, `${at}/${i}`, out))
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>
    if (o.type === 'object' || o.properties) out.push([at, o])
    for (const [k, v] of Object.entries(o)) objects(v, `${at}/${k}`, out)
  }
  return out
}

t.test('the schema is strict: additionalProperties false on every object', async (t) => {
  const all = objects(buildSchema(), '#', [])
  t.ok(all.length >= 6, `${all.length} objects`)
  for (const [at, o] of all) t.equal(o.additionalProperties, false, at)
})

t.test('enums come from the registries', async (t) => {
  const schema = buildSchema() as { $defs: { service: { properties: Record<string, { enum?: unknown[]; properties?: Record<string, { enum?: unknown[] }> }> } } }
  const service = schema.$defs.service.properties
  t.same(service.balance!.enum, [...algorithmNames], 'balance: every algorithm and alias')
  t.same(service.health!.properties!.type!.enum, [...CHECK_TYPES], 'health.type: every check type')
})

t.test('every example config in conf/ is valid', async (t) => {
  const files = readdirSync(path.join(ROOT, 'conf')).filter((f) => f.endsWith('.yaml'))
  t.ok(files.length >= 4, `${files.length} examples`)
  for (const f of files) {
    const config = loadConfigFile(path.join(ROOT, 'conf', f))
    t.ok(config.services.length > 0, `${f}: ${config.services.map((s) => s.name).join(', ')}`)
  }
})
