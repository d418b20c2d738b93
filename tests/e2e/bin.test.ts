import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, readlinkSync } from 'node:fs'
import { BIN, childEnv, stopChild, within } from '../helpers/index.js'

// Bulk speed must not depend on how l4lb is started (issue 12 item 5): bin/l4lb run as a user
// types it sets conf/l4lb.service's glibc malloc tunables itself, by exec, so the PID systemd and
// scripts see is l4lb's own and signals and exit codes are untouched.
t.test('bin/l4lb run directly: node with the malloc tunables in the same process; SIGTERM exits 0', async (t) => {
  // `env -u NODE_OPTIONS` (see childEnv): env, sh and node follow each other by exec in one PID.
  const proc = spawn('env', ['-u', 'NODE_OPTIONS', BIN, '-l', '127.0.0.1:0', '-b', '127.0.0.1:9', '--check', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv({ GLIBC_TUNABLES: undefined }) })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => stopChild(proc, exited))
  let out = ''
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  await within(15_000, 'the listening line', new Promise<void>((resolve) => {
    const check = (): void => void (out.includes('"msg":"listening"') ? resolve() : setTimeout(check, 20))
    check()
  }))
  const pid = proc.pid!
  t.equal(readlinkSync(`/proc/${pid}/exe`), readlinkSync('/proc/self/exe'), 'the spawned PID is node itself (env and sh exec\'d it in place)')
  // glibc cuts GLIBC_TUNABLES at its first ':' in the process's own copy of the environment
  // once it has read it, so the first tunable is what /proc shows.
  t.match(readFileSync(`/proc/${pid}/environ`, 'latin1'), /(^|\0)GLIBC_TUNABLES=glibc\.malloc\.trim_threshold=134217728/, 'the tunables are set')
  proc.kill('SIGTERM')
  t.equal(await within(10_000, 'exit after SIGTERM', exited), 0, 'SIGTERM exits 0')
})
