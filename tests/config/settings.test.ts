import t from 'tap'
import { ADMIN, configFromFlags, ConfigErrors, DEFAULTS, HEALTH, LOG, SERVICE, TOP, validateConfig, yamlKeyName, type FlagValues } from '../../lib/config/index.js'
import { duration, integer } from '../../lib/config/kinds.js'
import { Problems } from '../../lib/config/problems.js'
import { attrOf, kebab, readSection, row, type AnySetting } from '../../lib/config/table.js'

const base: FlagValues = { listen: ['127.0.0.1:5432'], backend: ['127.0.0.1:6432'], check: 'none' }

function firstError(run: () => unknown): string {
  try {
    run()
  } catch (err) {
    if (err instanceof ConfigErrors) return err.errors.map((e) => e.message).join('\n')
    throw err
  }
  return ''
}

t.test('a key and its flag have one name', async (t) => {
  // A flag is its key in kebab-case, optionally with its section's prefix (--check-port is
  // health.port, --log-level is log.level), singular for a repeatable list (--backend), or the
  // few names DESIGN.md fixed before the table existed (--check, --rise, --fall).
  const sections: Array<[readonly AnySetting[], string]> = [[SERVICE, ''], [HEALTH, 'check'], [LOG, 'log'], [ADMIN, 'admin'], [TOP, '']]
  const seen = new Set<string>()
  for (const [rows, prefix] of sections) {
    for (const r of rows) {
      if (!r.flag) continue
      t.notOk(seen.has(r.flag), `${r.flag} is used once`)
      seen.add(r.flag)
      const name = r.flag.slice(2)
      const forms = [kebab(r.key), `${prefix}-${kebab(r.key)}`, r.repeatable ? kebab(r.key).replace(/s$/, '') : '', prefix]
      t.ok(forms.includes(name) || (prefix === 'check' && r.key === 'type'), `${r.flag} names ${prefix ? `${prefix}.` : ''}${r.key}`)
      t.ok(r.help.length > 0, `${r.flag} has help`)
    }
  }
})

t.test('every flag sets its key: a sample value per kind round-trips', async (t) => {
  const samples: Record<string, [string | string[] | boolean, string, unknown]> = {
    hashKey: ['src-ip-port', 'hashKey', 'src-ip-port'],
    connectTimeout: ['250ms', 'connectTimeoutMs', 250],
    retries: ['5', 'retries', 5],
    udpBuffer: ['1MiB', 'udpBufferBytes', 1024 * 1024],
    reusePort: [true, 'reusePort', true],
    udpKeepOnDown: [true, 'udpKeepOnDown', true],
    acceptProxy: [['10.0.0.0/8,192.0.2.7'], 'acceptProxy', ['10.0.0.0/8', '192.0.2.7']],
  }
  for (const [key, [value, field, want]] of Object.entries(samples)) {
    const r = SERVICE.find((s) => s.key === key)!
    const s = configFromFlags({ ...base, [attrOf(r.flag!)]: value } as FlagValues).services[0]! as unknown as Record<string, unknown>
    t.same(s[field], want, `${r.flag} → ${field}`)
  }
  const h = configFromFlags({ ...base, check: 'http', checkInterval: '3s', checkHttpPath: '/ready', rise: '4' }).services[0]!.health
  t.match(h, { type: 'http', intervalMs: 3000, httpPath: '/ready', rise: 4 })
})

t.test('defaults come from the rows', async (t) => {
  const s = configFromFlags(base).services[0]!
  for (const r of SERVICE) {
    if (r.key === 'name' || r.key === 'health' || r.required) continue
    t.same((s as unknown as Record<string, unknown>)[r.field], r.default, `${r.key} defaults to its row's default`)
  }
  t.equal(DEFAULTS.connectTimeoutMs, 5000)
  t.equal(DEFAULTS.health.rise, 2)
  t.equal(s.name, 'default')
  t.same(configFromFlags({ listen: base.listen, backend: base.backend }).services[0]!.health, DEFAULTS.health, 'health defaults')
})

t.test('the old spelling --udp-keep-sessions still works and says it is deprecated', async (t) => {
  const config = configFromFlags({ ...base, udpKeepSessions: true })
  t.equal(config.services[0]!.udpKeepOnDown, true)
  t.same(config.warnings, ['--udp-keep-sessions is deprecated: use --udp-keep-on-down'])
  t.same(configFromFlags({ ...base, udpKeepOnDown: true }).warnings, [], 'the new name warns about nothing')
})

t.test('a new row is one line: it is read, defaulted, checked and named in errors', async (t) => {
  const rows = [
    row('queueTimeout', duration(), { default: 0, help: 'how long a connection may wait for a slot' }),
    row('maxConnsPerIp', integer(0, 1000), { default: 0, help: 'connections per client IP, 0 = unlimited' }),
  ] as const
  const problems = new Problems(yamlKeyName)
  const values = readSection(rows, { queueTimeout: '2s', maxConsPerIp: 3 }, ['services', 0], problems)
  t.equal(values.queueTimeoutMs, 2000)
  t.equal(values.maxConnsPerIp, 0, 'a misspelt key leaves the default')
  t.same(problems.list.map((e) => e.message), ['services[0].maxConsPerIp: unknown key (did you mean "maxConnsPerIp"?)'])
  t.equal(rows[0].flag, '--queue-timeout')
  t.equal(rows[1].flag, '--max-conns-per-ip')
})

t.test('YAML errors name the key path and value; several are reported at once', async (t) => {
  const message = firstError(() =>
    validateConfig({ services: [{ listen: ':1', backends: ['a:1'], retries: 99, health: { type: 'ping', interval: '5' } }], lgo: {} }, yamlKeyName),
  )
  t.match(message, 'lgo: unknown key (did you mean "log"?)')
  t.match(message, 'services[0].retries 99: must be a whole number from 0 to 16')
  t.match(message, 'services[0].health.type "ping": must be one of tcp, send-expect, http, udp, none')
  t.match(message, 'services[0].health.interval "5": needs a unit')
})

t.test('flags override one key of the file, the rest of its mapping stays', async (t) => {
  const { applyFlagOverrides } = await import('../../lib/config/index.js')
  const raw = { services: [{ listen: ':1', backends: ['a:1'], health: { type: 'http', httpPath: '/x' } }], admin: '127.0.0.1:9090' }
  t.equal(applyFlagOverrides(raw, { checkInterval: '5s', adminTokenFile: '/etc/token' }), undefined)
  const config = validateConfig(raw, yamlKeyName)
  t.match(config.services[0]!.health, { type: 'http', httpPath: '/x', intervalMs: 5000 })
  t.same(config.admin, { listen: '127.0.0.1:9090', tokenFile: '/etc/token' })
  const two = { services: [{ listen: ':1', backends: ['a:1'] }, { listen: ':2', backends: ['a:1'] }] }
  t.match(applyFlagOverrides(two, { retries: '1' }), /need a config file with exactly one service/)
})
