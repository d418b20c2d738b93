/**
 * The release as a user gets it: `npm pack` once, `npm install -g` of that tarball into a temp
 * prefix (offline: the runtime dependencies are bundled in it, nothing comes from a registry),
 * then the installed `l4lb` on PATH, `import ... from 'l4lb'` by name (JavaScript and a
 * TypeScript type check), and `l4lb install-service` into a temp root checked by systemd-analyze.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { childEnv, EchoBackend, eventually, ROOT, whoAnswers } from '../helpers/index.js'

const dir = mkdtempSync(path.join(tmpdir(), 'l4lb-pack-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const prefix = path.join(dir, 'prefix')
const installed = path.join(prefix, 'lib', 'node_modules', 'l4lb')
const nodeDir = path.dirname(process.execPath)
// Only Node (and the new prefix) on PATH: nothing from this checkout's node_modules/.bin.
const env = childEnv({ PATH: `${path.join(prefix, 'bin')}:${nodeDir}:/usr/bin:/bin`, L4LB_SKIP_NATIVE: '1' })

function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { code: number | null; stdout: string; stderr: string } {
  // Through env -u: tap's spawn hook would put its loader back into NODE_OPTIONS (helpers/index.ts).
  const r = spawnSync('env', ['-u', 'NODE_OPTIONS', cmd, ...args], { cwd: options.cwd ?? dir, env: options.env ?? env, encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') }
}

let tarball = ''
t.before(() => {
  // `npm test` has just built dist/: pack what it built (the prepare script would rebuild it).
  const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT })
  if (pack.code !== 0) throw new Error(`npm pack failed: ${pack.stderr}`)
  tarball = path.join(dir, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0]!.filename)
  const install = run('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, tarball])
  if (install.code !== 0) throw new Error(`npm install -g failed: ${install.stderr}`)
})

t.test('the tarball holds the built CLI, library, types, man page and completion; no tests, no dev dependencies', async (t) => {
  const files = new Set(run('tar', ['tzf', tarball]).stdout.split('\n').map((f) => f.replace(/^package\//, '')))
  for (const f of ['bin/l4lb', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/cli/index.js', 'conf/man/man1/l4lb.1', 'conf/completions/l4lb.bash', 'conf/l4lb.service', 'conf/l4lb.yaml', 'lib/native/build.mjs']) {
    t.ok(files.has(f), f)
  }
  const unwanted = [...files].filter((f) => f.startsWith('dist/tests/') || f.startsWith('tests/') || /^lib\/(?!native\/).*\.ts$/.test(f) || /^node_modules\/(typescript|tap|@types)\//.test(f))
  t.same(unwanted, [], 'no tests, TypeScript sources or dev dependencies')
  t.ok(files.has('node_modules/pino/package.json'), 'runtime dependencies are bundled (installs offline)')
  t.notOk(existsSync(path.join(installed, 'node_modules', 'typescript')), 'the install has no TypeScript: nothing is compiled at install')
})

t.test('npm install -g puts a working l4lb on PATH, with its man page', async (t) => {
  const help = run('l4lb', ['--help'])
  t.equal(help.code, 0, help.stderr)
  t.match(help.stdout, /-l, --listen <\[host\]:port>/)
  t.equal(run('l4lb', ['--version']).stdout.trim(), (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version)
  t.ok(existsSync(path.join(prefix, 'share', 'man', 'man1', 'l4lb.1')), 'npm linked man/l4lb.1 into the prefix')

  const backend = await new EchoBackend('installed').start()
  t.teardown(() => backend.stop())
  const proc = spawn('env', ['-u', 'NODE_OPTIONS', 'l4lb', '-l', '127.0.0.1:0', '-b', backend.address, '--check', 'none'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => proc.once('close', resolve))
  t.teardown(async () => {
    proc.kill('SIGKILL')
    await exited
  })
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  const port = await eventually('the listening line', () => Number(/"listen":\["127\.0\.0\.1:(\d+)"/.exec(out)?.[1] ?? 0), 15_000)
  t.equal(await whoAnswers(port), 'installed', 'the installed l4lb balances')
  proc.kill('SIGTERM')
  t.equal(await exited, 0)
})

t.test("a Node program imports the installed package by name: import { start, algorithms } from 'l4lb'", async (t) => {
  const project = path.join(dir, 'app')
  mkdirSync(path.join(project, 'node_modules'), { recursive: true })
  symlinkSync(installed, path.join(project, 'node_modules', 'l4lb'))
  writeFileSync(path.join(project, 'package.json'), '{ "type": "module" }\n')
  writeFileSync(path.join(project, 'main.mjs'), `
import net from 'node:net'
import { start, algorithms, createRegistry } from 'l4lb'
const backend = net.createServer((s) => s.end('hi\\n')).listen(0, '127.0.0.1')
await new Promise((r) => backend.once('listening', r))
const registry = createRegistry().addAlgorithm('first', { hashed: false, createPicker: (entries) => ({ pick: () => (entries.length ? 0 : -1) }) })
const lb = await start({ services: [{ name: 'app', listen: ['127.0.0.1:0'], balance: 'first', health: { type: 'none' }, backends: ['127.0.0.1:' + backend.address().port] }], log: { level: 'silent' } }, { registry })
const reply = await new Promise((resolve, reject) => {
  const c = net.connect(lb.addresses()[0].port, '127.0.0.1')
  let data = ''
  c.setEncoding('utf8').on('data', (d) => (data += d)).on('end', () => resolve(data)).on('error', reject)
})
const status = lb.status()
await lb.close()
backend.close()
console.log(JSON.stringify({ reply, algorithms: Object.keys(algorithms), balance: status.services[0].balance }))
`)
  const r = run(process.execPath, ['main.mjs'], { cwd: project })
  t.equal(r.code, 0, r.stderr)
  const result = JSON.parse(r.stdout) as { reply: string; algorithms: string[]; balance: string }
  t.equal(result.reply, 'hi\n')
  t.equal(result.balance, 'first')
  t.ok(result.algorithms.includes('maglev'))

  // The published types: a TypeScript program using them type-checks, and a wrong call does not.
  writeFileSync(path.join(project, 'main.ts'), `
import { start, createRegistry, type Algorithm, type HealthCheck, type L4lb, type Status } from 'l4lb'
const last: Algorithm = { hashed: false, createPicker: (entries) => ({ pick: () => entries.length - 1 }) }
const ping: HealthCheck = { async run(target, { signal }) { if (signal.aborted || target.port === 0) throw new Error('no') } }
const registry = createRegistry().addAlgorithm('last', last).addCheck('ping', ping)
export async function main(): Promise<Status> {
  const lb: L4lb = await start({ services: [{ listen: [':0'], backends: ['127.0.0.1:1'], balance: 'last', health: { type: 'ping' } }] }, { registry })
  await lb.reload(lb.config)
  // @ts-expect-error drain takes a number of milliseconds
  await lb.drain('soon')
  return lb.status()
}
`)
  writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
    files: ['main.ts'],
  }))
  const tsc = run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: project })
  t.equal(tsc.code, 0, `tsc: ${tsc.stdout}${tsc.stderr}`)
})

t.test('l4lb install-service into a temp root: the unit runs the installed binary and passes systemd-analyze', async (t) => {
  const root = path.join(dir, 'root')
  const first = run('l4lb', ['install-service', '--root', root])
  t.equal(first.code, 0, first.stderr)
  const unitFile = path.join(root, 'etc', 'systemd', 'system', 'l4lb.service')
  const unit = readFileSync(unitFile, 'utf8')
  const binary = path.join(prefix, 'bin', 'l4lb')
  t.match(unit, `\nExecStart=${binary} run -c /etc/l4lb/l4lb.yaml\n`, 'ExecStart is the l4lb npm installed (its prefix found from where it runs)')
  t.match(unit, `\nExecStartPre=${binary} check -c /etc/l4lb/l4lb.yaml\n`)
  t.match(unit, '\nDocumentation=man:l4lb(1)\n')
  t.equal(unit.includes('Environment=PATH='), !['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin'].includes(nodeDir), 'PATH is set only when Node is off systemd\'s default PATH')
  const config = path.join(root, 'etc', 'l4lb', 'l4lb.yaml')
  t.equal(readFileSync(config, 'utf8'), readFileSync(path.join(ROOT, 'conf', 'l4lb.yaml'), 'utf8'), 'the config comes from the example')
  t.equal(statSync(path.join(root, 'etc', 'l4lb', 'admin-token')).mode & 0o777, 0o600, 'the admin token is root-only')
  t.ok(existsSync(path.join(root, prefix, 'share', 'bash-completion', 'completions', 'l4lb')), 'bash completion installed')

  writeFileSync(config, '# mine\n')
  const token = readFileSync(path.join(root, 'etc', 'l4lb', 'admin-token'), 'utf8')
  const again = run('l4lb', ['install-service', '--root', root, '--prefix', '/usr/local'])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /exists: kept as it is/)
  t.equal(readFileSync(config, 'utf8'), '# mine\n', 'an existing config is never overwritten')
  t.equal(readFileSync(path.join(root, 'etc', 'l4lb', 'admin-token'), 'utf8'), token, 'nor the token')
  t.match(readFileSync(unitFile, 'utf8'), '\nExecStart=/usr/local/bin/l4lb run -c /etc/l4lb/l4lb.yaml\n', '--prefix names the binary')

  const noBinary = run('l4lb', ['install-service', '--prefix', path.join(dir, 'nowhere')])
  t.equal(noBinary.code, 2, 'without --root a prefix with no l4lb in it is refused')
  t.match(noBinary.stderr, /^l4lb: --prefix: no l4lb at .*nowhere\/bin\/l4lb/)

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
  if (analyze.status !== 0) {
    t.comment('skipped systemd-analyze verify/security: needs the Debian systemd package')
    return
  }
  // verify on the unit as installed for the real binary; man finds l4lb(1) in the prefix.
  run('l4lb', ['install-service', '--root', root])
  const hasMan = spawnSync('sh', ['-c', 'command -v man']).status === 0
  const verify = run('systemd-analyze', ['verify', ...(hasMan ? [] : ['--man=no']), unitFile], { env: { ...env, MANPATH: path.join(prefix, 'share', 'man') } })
  const ours = (verify.stdout + verify.stderr).split('\n').filter((l) => l.includes('l4lb'))
  t.same(ours, [], `systemd-analyze verify: no complaint about the unit (exit ${verify.code})`)
  const security = run('systemd-analyze', ['security', '--offline=true', '--no-pager', unitFile])
  const score = Number(/Overall exposure level for l4lb\.service: ([\d.]+)/.exec(security.stdout)?.[1] ?? NaN)
  t.ok(score <= 2.0, `systemd-analyze security: exposure ${score} <= 2.0`)
})
