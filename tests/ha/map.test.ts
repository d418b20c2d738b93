/**
 * `l4lb map`: two hosts with one config agree on every key (issue 15), and map's answer is the
 * data path's answer, also over a running instance's live usable set.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { configFromFlags, type FlagValues } from '../../lib/config/index.js'
import { runMap, type MapOptions } from '../../lib/cli/map.js'
import { EchoBackend, runL4lb, spawnL4lb, whoAnswers, tempDir } from '../helpers/index.js'

const KEY_COUNT = 10_000

/** 10,000 client addresses with source ports, a quarter of them IPv6. */
function keys(): string[] {
  const out: string[] = []
  for (let i = 0; i < KEY_COUNT; i++) {
    const port = 1024 + ((i * 7919) % 64000)
    out.push(i % 4 === 3 ? `[2001:db8::${i.toString(16)}]:${port}` : `198.51.${(i >> 8) & 255}.${i & 255}:${port}`)
  }
  return out
}

/** `# service` header and `key backend` lines → service → key → backend. */
function parse(stdout: string): Map<string, Map<string, string>> {
  const services = new Map<string, Map<string, string>>()
  let current: Map<string, string> | undefined
  for (const line of stdout.split('\n')) {
    const header = /^# service (\S+):/.exec(line)
    if (header) services.set(header[1]!, (current = new Map()))
    else if (line !== '') current!.set(line.split(' ')[0]!, line.split(' ')[1]!)
  }
  return services
}

const BACKENDS = ['10.0.0.1:5432', '10.0.0.2:5432,weight=3', '10.0.0.3:5432', 'db4.example:5432', '[2001:db8::5]:5432', '10.0.0.9:5432,backup']
const ALGORITHMS = ['maglev', 'ring', 'ip-hash'] as const
const HASH_KEYS = ['src-ip', 'src-ip-port'] as const

function configFile(dir: string, name: string, order: (list: string[]) => string[]): string {
  let yaml = 'services:\n'
  let port = 1
  for (const balance of ALGORITHMS) {
    for (const hashKey of HASH_KEYS) {
      yaml += `  - name: ${balance}-${hashKey}\n    listen: [":${port++}"]\n    balance: ${balance}\n    hashKey: ${hashKey}\n    backends:\n`
      for (const b of order(BACKENDS)) yaml += `      - ${JSON.stringify(b)}\n`
    }
  }
  const file = path.join(dir, name)
  writeFileSync(file, yaml)
  return file
}

t.test('two processes with one config, backends listed in different orders, map 10,000 keys identically for every hashing algorithm', async (t) => {
  const dir = tempDir(t, 'l4lb-map-')
  const keysFile = path.join(dir, 'keys')
  writeFileSync(keysFile, '# client addresses\n' + keys().join('\n') + '\n')
  const a = configFile(dir, 'a.yaml', (l) => l)
  const b = configFile(dir, 'b.yaml', (l) => [...l].reverse())
  const c = configFile(dir, 'c.yaml', (l) => [l[3]!, l[0]!, l[5]!, l[2]!, l[4]!, l[1]!])
  const [ra, rb, rc, rflags] = await Promise.all([
    runL4lb(['map', '-c', a, '--keys-from', keysFile], 60_000),
    runL4lb(['map', '-c', b, '--keys-from', keysFile], 60_000),
    runL4lb(['map', '-c', c, '--keys-from', keysFile], 60_000),
    // Run flags instead of -c: the same flags `l4lb run` would take (no --listen needed).
    runL4lb(['map', '--balance', 'consistent', ...[...BACKENDS].reverse().flatMap((x) => ['-b', x]), '--keys-from', keysFile], 60_000),
  ])
  for (const r of [ra, rb, rc, rflags]) t.equal(r.code, 0, r.stderr)
  const mapA = parse(ra.stdout)
  t.equal(mapA.size, ALGORITHMS.length * HASH_KEYS.length, 'one section per service')
  t.ok(ra.stdout === rb.stdout && ra.stdout === rc.stdout, 'the three orders give byte-identical output')
  for (const [other, what] of [[parse(rb.stdout), 'reversed'], [parse(rc.stdout), 'shuffled']] as const) {
    for (const [service, map] of mapA) {
      const theirs = other.get(service)!
      let differ = 0
      for (const [key, backend] of map) if (theirs.get(key) !== backend) differ++
      t.equal(differ, 0, `${service}: ${what} order maps every key the same`)
    }
  }
  const primaries = BACKENDS.filter((x) => !x.endsWith(',backup')).map((x) => x.split(',')[0]!)
  for (const [service, map] of mapA) {
    t.equal(map.size, KEY_COUNT, `${service}: every key mapped`)
    const counts = new Map<string, number>()
    for (const backend of map.values()) counts.set(backend, (counts.get(backend) ?? 0) + 1)
    t.same([...counts.keys()].sort(), [...primaries].sort(), `${service}: keys spread over every primary, none to the backup`)
    t.ok((counts.get('10.0.0.2:5432') ?? 0) > (counts.get('10.0.0.1:5432') ?? 0), `${service}: weight 3 gets more keys than weight 1`)
  }
  // src-ip ignores the port: two keys with one IP and different ports map together.
  const flags = parse(rflags.stdout).get('default')!
  const maglev = mapA.get('maglev-src-ip')!
  let differ = 0
  for (const [key, backend] of maglev) if (flags.get(key) !== backend) differ++
  t.equal(differ, 0, 'run flags (consistent, reversed -b order) map like the maglev config')
})

t.test('map answers what the data path does, also over a running instance\'s live usable set (--admin)', async (t) => {
  const backends = await Promise.all(['a', 'b', 'c'].map((n) => new EchoBackend(n).start()))
  t.teardown(() => Promise.all(backends.map((b) => b.stop())))
  const byAddress = new Map(backends.map((b) => [b.address, b.name]))
  const flags = backends.flatMap((b) => ['-b', b.address])
  const lb = await spawnL4lb(['-l', '127.0.0.1:0', ...flags, '--check', 'none', '--name', 'web', '--admin', '127.0.0.1:0'])
  t.teardown(() => lb.stop())
  const adminLine = await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const admin = String(adminLine.admin)
  // Own 127.x sources: each is a distinct client key (and never collides with a reuse-port listener).
  const sources = Array.from({ length: 40 }, (_, i) => `127.0.${20 + (i >> 4)}.${1 + (i & 15) * 7}`)

  const check = async (label: string, usable: string): Promise<Map<string, string>> => {
    const mapped = await runL4lb(['map', ...flags, '--name', 'web', '--admin', admin, ...sources.flatMap((s) => ['--key', s])], 30_000)
    t.equal(mapped.code, 0, mapped.stderr)
    t.match(mapped.stdout, new RegExp(`^# service web: consistent by src-ip, ${usable} backends usable \\(live from `), `${label}: header`)
    const predicted = parse(mapped.stdout).get('web')!
    let wrong = 0
    for (const source of sources) {
      const answered = await whoAnswers(lb.ports[0]!, source)
      if (byAddress.get(predicted.get(source)!) !== answered) wrong++
    }
    t.equal(wrong, 0, `${label}: every source reached the backend map predicted`)
    return predicted
  }
  const before = await check('all up', '3 of 3')
  t.equal(new Set(before.values()).size, 3, '40 sources reach all three backends')

  const maint = await runL4lb(['maint', 'web', backends[1]!.address, '--admin', admin])
  t.equal(maint.code, 0, maint.stderr)
  const after = await check('b in maint', '2 of 3')
  t.notOk([...after.values()].includes(backends[1]!.address), 'no key maps to the backend in maint')
  const pure = await runL4lb(['map', ...flags, '--key', sources[0]!])
  t.match(pure.stdout, /3 of 3 backends usable \(every backend up\)/, 'without --admin: the config alone, every backend up')
})

t.test('map: bad input is one line naming what is wrong, exit 2', async (t) => {
  // Two through the CLI (exit code, one line on stderr); the rest through runMap, which throws
  // the ExitError the CLI prints: same message, no process start per case on a loaded box.
  const cli: Array<[string[], RegExp]> = [
    [['map', '-b', '10.0.0.1:1', '--key', 'db1'], /^l4lb: --key "db1": not a client address \(ip, ip:port or \[ipv6\]:port\)$/],
    [['map', '-b', '10.0.0.1:1', '-a', 'round-robin', '--key', '10.1.1.1'], /^l4lb: map: service default: balances with round-robin, which ties no key to a backend/],
  ]
  await Promise.all(cli.map(async ([args, expected]) => {
    const r = await runL4lb(args, 30_000)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr.trim(), expected, args.join(' '))
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  }))
  const cases: Array<[FlagValues, MapOptions, RegExp]> = [
    [{ backend: ['10.0.0.1:1'] }, {}, /^map: give client addresses with --key ADDR or --keys-from FILE$/],
    [{ backend: ['10.0.0.1:1'] }, { key: ['10.1.1.1:99999'] }, /^--key "10.1.1.1:99999": port must be 0-65535$/],
    [{ backend: ['10.0.0.1:1'] }, { key: ['1:2:3'] }, /^--key "1:2:3": not a client address/],
    [{ backend: ['10.0.0.1:1'], hashKey: 'src-ip-port' }, { key: ['10.1.1.1'] }, /^key "10.1.1.1": service default hashes src-ip-port, so keys need a port \(ip:port\)$/],
    [{ backend: ['srv:_pg._tcp.example'] }, { key: ['10.1.1.1'] }, /^service default has srv: backends, which only a running l4lb expands: add --admin ADDR/],
    [{ backend: ['10.0.0.1:1'] }, { keysFrom: '/nonexistent/keys' }, /^--keys-from "\/nonexistent\/keys": ENOENT$/],
    [{ backend: ['10.0.0.1:1'] }, { key: ['10.1.1.1'], service: 'web' }, /^--service "web": no such service \(have: default\)$/],
  ]
  for (const [flags, opts, expected] of cases) {
    const config = configFromFlags({ listen: [':1'], ...flags })
    await t.rejects(runMap(config, opts), { exitCode: 2, message: expected }, JSON.stringify(opts))
  }
})
