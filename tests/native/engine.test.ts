/**
 * Builds and runs the engine's C tests (tests/native/engine_test.c, admit_test.c) under AddressSanitizer and
 * UBSan: real loopback sockets through the engine, without Node. Skipped, with the reason, where
 * no C compiler or make is installed.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { ROOT } from '../helpers/index.js'

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)))
}

const skip = process.platform !== 'linux' ? 'Linux only' : !onPath('make') ? 'needs make' : !onPath('cc') && !onPath('gcc') ? 'needs a C compiler' : false

t.test('the engine and admission C tests pass under ASan and UBSan', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-engine-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const run = spawnSync('make', ['-s', '-C', join(ROOT, 'tests', 'native'), 'test', `OUT=${join(dir, 'engine_test')}`], {
    encoding: 'utf8',
    timeout: 120_000,
    // tap's NODE_OPTIONS loaders mean nothing to a C program; ASan must see no LD_PRELOAD either
    env: { ...process.env, NODE_OPTIONS: '', LD_PRELOAD: '' },
  })
  const output = `${run.stdout}${run.stderr}`
  t.equal(run.status, 0, `make test exits 0\n${output.slice(-4000)}`)
  t.match(run.stdout, /admit_test: all cases passed/, 'every admission case ran')
  t.match(run.stdout, /engine_test: ok/, 'every case ran')
  t.notMatch(output, /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/, 'no sanitizer report')
})
