import t from 'tap'
import { configFromFlags, ConfigErrors, DEFAULTS, formatSize, parseSize, validateConfig, yamlKeyName, type FlagValues } from '../../lib/config/index.js'

const base: FlagValues = { listen: ['127.0.0.1:5353'], backend: ['127.0.0.1:53'], protocol: 'udp' }

function firstError(flags: FlagValues): string {
  try {
    configFromFlags({ ...base, ...flags })
  } catch (err) {
    if (err instanceof ConfigErrors) return err.errors[0]!.message
    throw err
  }
  return ''
}

t.test('sizes as operators write them', async (t) => {
  const table: Array<[string, number | RegExp]> = [
    ['4MiB', 4 * 1024 * 1024], ['4M', 4 * 1024 * 1024], ['4mb', 4 * 1024 * 1024], ['512KiB', 524_288], ['512k', 524_288],
    ['65536', 65_536], ['65536B', 65_536], ['1GiB', 1024 ** 3], ['1.5MiB', 1_572_864], [' 2MiB ', 2_097_152],
    ['', /not a size/], ['MiB', /not a size/], ['-1MiB', /not a size/], ['4XB', /unknown unit "XB"/], ['4 MiBs', /unknown unit/],
  ]
  for (const [text, want] of table) {
    const got = parseSize(text)
    if (typeof want === 'number') t.equal(got, want, JSON.stringify(text))
    else t.match(got, want, JSON.stringify(text))
  }
  t.equal(formatSize(4 * 1024 * 1024), '4MiB')
  t.equal(formatSize(1536), '1536B')
  t.equal(formatSize(2048), '2KiB')
})

t.test('UDP defaults', async (t) => {
  const s = configFromFlags(base).services[0]!
  t.same(s.protocols, ['udp'])
  t.equal(s.udpIdleTimeoutMs, DEFAULTS.udpIdleTimeoutMs)
  t.equal(s.udpIdleTimeoutMs, 30_000)
  t.equal(s.udpResponses, 0, 'unlimited')
  t.equal(s.udpMaxSessions, 100_000)
  t.equal(s.udpBufferBytes, 4 * 1024 * 1024)
  t.equal(s.udpKeepOnDown, false)
})

t.test('UDP flags are parsed once into typed keys', async (t) => {
  const s = configFromFlags({
    ...base, protocol: 'tcp,udp', udpIdleTimeout: '2m', udpResponses: '1', udpMaxSessions: '500', udpBuffer: '8MiB', udpKeepSessions: true,
  }).services[0]!
  t.same(s.protocols, ['tcp', 'udp'])
  t.match(s, { udpIdleTimeoutMs: 120_000, udpResponses: 1, udpMaxSessions: 500, udpBufferBytes: 8 * 1024 * 1024, udpKeepOnDown: true })
})

t.test('every bad UDP value is named with its flag and value', async (t) => {
  const table: Array<[FlagValues, string]> = [
    [{ udpIdleTimeout: '30' }, '--udp-idle-timeout "30": needs a unit'],
    [{ udpIdleTimeout: '1ms' }, '--udp-idle-timeout "1ms": must be at least 10ms'],
    [{ udpResponses: '-1' }, '--udp-responses "-1": must be a whole number from 0 to 1000000'],
    [{ udpMaxSessions: '0' }, '--udp-max-sessions "0": must be a whole number from 1 to 10000000'],
    [{ udpBuffer: 'lots' }, '--udp-buffer "lots": not a size'],
    [{ udpBuffer: '1KiB' }, '--udp-buffer "1KiB": must be from 65536 to 1073741824 bytes'],
    [{ udpBuffer: '4TiB' }, '--udp-buffer "4TiB": unknown unit "TiB"'],
    [{ protocol: 'sctp' }, '--protocol "sctp": must be tcp, udp or tcp,udp'],
  ]
  for (const [flags, want] of table) t.match(firstError(flags), want, want)
})

t.test('YAML keys: udpKeepOnDown and friends, errors name services[i].key', async (t) => {
  const raw = {
    services: [{ listen: ':53', protocol: 'udp', backends: ['10.0.0.1:53'], udpKeepOnDown: 'yes', udpBuffer: 4194304, udpResponses: 1 }],
  }
  t.throws(() => validateConfig(raw, yamlKeyName), { message: /services\[0\]\.udpKeepOnDown "yes": must be true or false/ })
  const ok = validateConfig({ services: [{ ...raw.services[0], udpKeepOnDown: true }] }, yamlKeyName).services[0]!
  t.match(ok, { udpKeepOnDown: true, udpBufferBytes: 4_194_304, udpResponses: 1 })
  t.throws(() => validateConfig({ services: [{ ...raw.services[0], udpKeepOnDown: true, udpIdle: '5s' }] }, yamlKeyName), {
    message: /services\[0\]\.udpIdle: unknown key/,
  })
})
