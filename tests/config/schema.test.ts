import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { BACKEND_KEYS, HEALTH_KEYS, SERVICE_KEYS } from '../../lib/config/service.js'
import { TOP_KEYS, loadConfigFile } from '../../lib/config/file.js'
import { ROOT } from '../helpers/index.js'

interface Schema {
  properties: Record<string, unknown>
  $defs: Record<string, { properties?: Record<string, unknown>; oneOf?: Array<{ properties?: Record<string, unknown> }> }>
}

const schema = JSON.parse(readFileSync(path.join(ROOT, 'conf', 'l4lb.schema.json'), 'utf8')) as Schema

t.test('the JSON Schema names exactly the keys the validator knows', async (t) => {
  t.same(Object.keys(schema.properties).sort(), [...TOP_KEYS].sort(), 'top level')
  t.same(Object.keys(schema.$defs.service!.properties!).sort(), [...SERVICE_KEYS].sort(), 'service')
  t.same(Object.keys(schema.$defs.health!.properties!).sort(), [...HEALTH_KEYS].sort(), 'health')
  const backendObject = schema.$defs.backend!.oneOf!.find((o) => o.properties)!
  t.same(Object.keys(backendObject.properties!).sort(), [...BACKEND_KEYS].sort(), 'backend')
})

t.test('every example config in conf/ is valid', async (t) => {
  const files = readdirSync(path.join(ROOT, 'conf')).filter((f) => f.endsWith('.yaml'))
  t.ok(files.length >= 4, `${files.length} examples`)
  for (const f of files) {
    const config = loadConfigFile(path.join(ROOT, 'conf', f))
    t.ok(config.services.length > 0, `${f}: ${config.services.map((s) => s.name).join(', ')}`)
  }
})
