import t from 'tap'
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { BIN, ROOT, childEnv, connect, eventually, nodeCommand, readLine, stopChild } from '../helpers/index.js'

t.test('l4lb demo names its backends alpha, bravo and charlie in its log lines', async (t) => {
  const [cmd, ...args] = nodeCommand(BIN, 'demo')
  const proc = spawn(cmd!, args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => proc.once('close', resolve))
  t.teardown(() => stopChild(proc, exited))
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  const port = await eventually('the demo banner', () => Number(/balancing 127\.0\.0\.1:(\d+)/.exec(out)?.[1] ?? 0), 30_000)
  t.match(out, /listening .*backends=\["alpha","bravo","charlie"\]/)
  const greetings = new Set<string>()
  for (let i = 0; i < 3; i++) {
    const socket = await connect(port)
    greetings.add(await readLine(socket))
    socket.end()
  }
  t.same([...greetings].sort(), ['hello from backend alpha', 'hello from backend bravo', 'hello from backend charlie'], 'round-robin over the three')
  for (const name of ['alpha', 'bravo', 'charlie']) {
    await eventually(`a connection line naming ${name}`, () => new RegExp(`connection closed .*backend=${name} `).test(out), 5000)
  }
  t.notMatch(out, /backend=127\.0\.0\.1:/, 'no line names a backend by address alone')
})

// Issue 12: bulk speed must not depend on how l4lb is started. `npm start` runs the package's
// start script through a shell as npm does; the demo's process must carry bin/l4lb's malloc
// tunables (on Node 20 `node bin/l4lb` cannot re-exec itself with them).
t.test('npm start runs the demo with the malloc tunables bin/l4lb sets', async (t) => {
  const script = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!
  // `env -u NODE_OPTIONS`: tap injects its loader into every child's NODE_OPTIONS (see childEnv)
  const proc = spawn('env', ['-u', 'NODE_OPTIONS', 'sh', '-c', script], { cwd: ROOT, env: childEnv({ GLIBC_TUNABLES: undefined }), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => proc.once('close', resolve))
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  const demo: number = await eventually('the demo banner', () => (/balancing 127\.0\.0\.1:\d+/.test(out) ? demoPid(proc.pid!) : undefined) ?? 0, 30_000)
  t.teardown(() => {
    process.kill(demo, 'SIGTERM')
    return stopChild(proc, exited)
  })
  t.match(readFileSync(`/proc/${demo}/environ`, 'latin1'), /(^|\0)GLIBC_TUNABLES=glibc\.malloc\.trim_threshold=134217728/, `${script}: the tunables are set`)
})

/** The node process running the demo: `root` itself or its newest descendant running node. */
function demoPid(root: number): number | undefined {
  const parent = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1')
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {
      // gone meanwhile
    }
  }
  const isUnder = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 10; p = parent.get(p), hops++) if (p === root) return true
    return false
  }
  const candidates = [...parent.keys()].filter((pid) => isUnder(pid) && readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('demo') && /node/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1')))
  return candidates.sort((a, b) => b - a)[0]
}
