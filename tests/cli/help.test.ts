import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { buildProgram } from '../../lib/cli/index.js'
import { MAIN_FLAGS, MAX_HELP_WIDTH, unknownCommandLine } from '../../lib/cli/help.js'
import { BIN, EchoBackend, childEnv, nodeCommand, runL4lb, spawnL4lb, within } from '../helpers/index.js'

t.test('l4lb --help shows the main flags of run, not just the subcommands', async (t) => {
  const { code, stdout } = await runL4lb(['--help'])
  t.equal(code, 0)
  t.match(stdout, /Commands:\n/)
  t.match(stdout, /Main options \(of run, the default command/)
  for (const flag of MAIN_FLAGS) t.match(stdout, new RegExp(`^  (-[a-z], )?${flag} `, 'm'), `lists ${flag}`)
})

t.test('every help page fits 100 columns, even on a wide terminal', async (t) => {
  const columns = Object.getOwnPropertyDescriptor(process.stdout, 'columns')
  Object.defineProperty(process.stdout, 'columns', { value: 250, configurable: true })
  t.teardown(() => (columns ? Object.defineProperty(process.stdout, 'columns', columns) : delete (process.stdout as { columns?: number }).columns))
  const program = buildProgram()
  for (const cmd of [program, ...program.commands]) {
    const lines = cmd.helpInformation().split('\n')
    const widest = Math.max(...lines.map((l) => l.length))
    t.ok(widest <= MAX_HELP_WIDTH, `${cmd.name()} --help is ${widest} columns wide`)
  }
  const run = program.commands.find((c) => c.name() === 'run')!
  t.match(run.helpInformation(), /\n  -b, --backend <host:port\S*>\n {10,}backend server/, 'a long option term gets a line of its own')
})

t.test('a mistyped subcommand: one line with a did-you-mean, exit 2', async (t) => {
  const { code, stdout, stderr } = await runL4lb(['stauts'])
  t.equal(code, 2)
  t.equal(stdout, '')
  t.equal(stderr, "l4lb: unknown command 'stauts' (did you mean 'status'?)\n")
  const program = buildProgram()
  t.equal(unknownCommandLine(program, ['dran']), "unknown command 'dran' (did you mean 'drain'?)")
  t.equal(unknownCommandLine(program, ['install']), "unknown command 'install' (did you mean 'install-service'?)")
  t.match(unknownCommandLine(program, ['xyzzy']), /^unknown command 'xyzzy' \(commands: run, demo, check, status/)
  t.equal(unknownCommandLine(program, ['-l', ':5432']), undefined, 'options go to run')
  t.equal(unknownCommandLine(program, ['status']), undefined)
})

t.test('status: no --admin and no config with an admin key says so (exit 2) instead of asking a guessed port', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'l4lb-help-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bare = path.join(dir, 'bare.yaml')
  writeFileSync(bare, 'services:\n  - listen: ["127.0.0.1:0"]\n    backends: ["127.0.0.1:1"]\n')
  const noAdmin = await runL4lb(['status', '-c', bare])
  t.equal(noAdmin.code, 2)
  t.equal(noAdmin.stderr, `l4lb: no admin endpoint configured in ${bare}: add \`admin: 127.0.0.1:9090\` (or a socket path) there, or pass --admin\n`)

  // The same file `run` uses tells `status` where the admin endpoint is: one source of truth.
  const backend = await new EchoBackend('a').start()
  t.teardown(() => backend.stop())
  const sock = path.join(dir, 'admin.sock')
  const token = path.join(dir, 'token')
  writeFileSync(token, 's3cret\n')
  const file = path.join(dir, 'l4lb.yaml')
  writeFileSync(file, `services:\n  - name: app\n    listen: ["127.0.0.1:0"]\n    health: {type: none}\n    backends: ["${backend.address}"]\nadmin: {listen: "${sock}", tokenFile: "${token}"}\n`)
  const lb = await spawnL4lb(['-c', file])
  t.teardown(() => lb.stop())
  await lb.waitForLog('admin', (l) => l.msg === 'admin endpoint listening')
  const status = await runL4lb(['status', '-c', file])
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, new RegExp(`^service app \\(tcp\\) on 127\\.0\\.0\\.1:${lb.ports[0]}`))
})

t.test('help into a pipe whose reader has gone: exit 0, no stack trace (l4lb --help | head -1)', async (t) => {
  const [cmd, ...args] = nodeCommand(BIN, '--help')
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() })
  child.stdout.destroy() // the reader is gone before l4lb writes a byte
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const code = await within(15_000, 'l4lb --help to exit', new Promise<number | null>((resolve) => child.once('close', resolve)))
  t.equal(stderr, '', 'nothing on stderr')
  t.equal(code, 0)
})
