import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { bashCompletion, COMPLETION_PATH, MAN_PATH, manPage } from '../../lib/cli/docs.js'
import { buildProgram } from '../../lib/cli/index.js'
import { ROOT } from '../helpers/index.js'

t.test('conf/man/man1/l4lb.1 and conf/completions/l4lb.bash are what the option definitions generate (run `npm run docs`)', async (t) => {
  t.equal(readFileSync(path.join(ROOT, MAN_PATH), 'utf8'), manPage(), MAN_PATH)
  t.equal(readFileSync(path.join(ROOT, COMPLETION_PATH), 'utf8'), bashCompletion(), COMPLETION_PATH)
})

t.test('the man page documents every option of every command', async (t) => {
  const man = manPage().replace(/\\-/g, '-')
  for (const cmd of buildProgram().commands) {
    for (const o of cmd.options.filter((o) => !o.hidden)) t.ok(man.includes(o.flags), `${cmd.name()} ${o.flags}`)
  }
  t.match(man, /^\.TH L4LB 1 /m)
})

t.test('bash completion: subcommands, the options of the command being typed, values of choice options', async (t) => {
  const text = bashCompletion()
  const commands = buildProgram().commands.map((c) => c.name())
  t.ok(['run', 'status', 'install-service'].every((c) => commands.includes(c)))
  t.ok(text.includes(`compgen -W '${commands.join(' ')} help'`), 'every subcommand is offered as the first word')
  t.match(text, /run\) opts='[^']*-l --listen -b --backend /)
  t.notMatch(text, /--udp-keep-sessions/, 'a deprecated (hidden) spelling is not offered')
  t.match(text, /-a\|--balance\) COMPREPLY=\(\$\(compgen -W 'consistent maglev ring ip-hash round-robin least-conn random-two'/)
  t.match(text, /--hash-key\) COMPREPLY=\(\$\(compgen -W 'src-ip src-ip-port'/)
  t.match(text, /-c\|--config\) COMPREPLY=\(\$\(compgen -f/)
})

t.test('bash completion works in bash', { skip: spawnSync('bash', ['-c', 'true']).status !== 0 ? 'needs bash' : false }, async (t) => {
  const complete = (...words: string[]): string => {
    const script = `source ${JSON.stringify(path.join(ROOT, COMPLETION_PATH))}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _l4lb; echo "\${COMPREPLY[*]}"`
    return spawnSync('bash', ['--norc', '--noprofile', '-c', script], { encoding: 'utf8' }).stdout.trim()
  }
  t.equal(complete('l4lb', 'sta'), 'status')
  t.equal(complete('l4lb', '--bal'), '--balance')
  t.equal(complete('l4lb', '--balance', 'ro'), 'round-robin')
  t.equal(complete('l4lb', 'status', '--adm'), '--admin --admin-token-file')
  t.equal(complete('l4lb', '-l', ''), '', 'a value of -l is not completed with commands')
})
