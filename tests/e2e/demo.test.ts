import t from 'tap'
import { spawn } from 'node:child_process'
import { BIN, childEnv, connect, eventually, nodeCommand, readLine, stopChild } from '../helpers/index.js'

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
