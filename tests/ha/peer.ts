/**
 * The small programs the HA tests run inside their network namespaces (started with
 * `ip netns exec NS node dist/tests/ha/peer.js MODE ...`; a namespace is entered per process).
 *
 *   echo ADDR:PORT...            backends: answer every connection with "LOCAL REMOTE\n" (which
 *                                backend, and which l4lb's address the connection came from)
 *   loop HOST:PORT INTERVAL_MS   a client connecting over and over; one JSON line per attempt
 *   burst HOST:PORT FIRST_IP COUNT PER_SOURCE
 *                                COUNT sources from FIRST_IP up, PER_SOURCE connections each;
 *                                one JSON document with every answer (and how many timed-out
 *                                connects were retried) at the end
 * Every connection is bounded by a timeout; `loop` ends when its stdin closes (the test ended).
 */
import net from 'node:net'

/** Per connection (connect + answer): generous, the box is shared; a loop attempt uses less. */
const ANSWER_TIMEOUT_MS = 8000
const LOOP_TIMEOUT_MS = 1000

interface Answer {
  ok: boolean
  backend?: string
  via?: string
  error?: string
}

function ask(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) })
    let data = ''
    const done = (answer: Answer): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer)
    }
    const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeoutMs)
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      data += chunk
      const nl = data.indexOf('\n')
      if (nl < 0) return
      const [backend, via] = data.slice(0, nl).split(' ')
      done({ ok: true, backend: backend!, via: via! })
    })
    socket.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }))
    socket.on('end', () => done({ ok: false, error: 'closed before an answer' }))
  })
}

function hostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':')
  return { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) }
}

function echo(addresses: string[]): void {
  for (const address of addresses) {
    const { host, port } = hostPort(address)
    net.createServer((socket) => {
      socket.on('error', () => socket.destroy())
      socket.end(`${address} ${socket.remoteAddress ?? '?'}\n`)
    }).listen({ host, port }, () => process.stdout.write(`listening ${address}\n`))
  }
}

async function loop(target: string, intervalMs: number): Promise<void> {
  const { host, port } = hostPort(target)
  let running = true
  process.stdin.on('end', () => (running = false)).on('close', () => (running = false)).resume()
  // Bounded even if the test never closes stdin.
  const deadline = Date.now() + 120_000
  while (running && Date.now() < deadline) {
    const started = Date.now()
    const answer = await ask(host, port, LOOP_TIMEOUT_MS)
    process.stdout.write(JSON.stringify({ at: started, ...answer }) + '\n')
    const wait = intervalMs - (Date.now() - started)
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  }
  process.exit(0)
}

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

async function burst(target: string, firstIp: string, count: number, perSource: number): Promise<void> {
  const { host, port } = hostPort(target)
  const first = firstIp.split('.').reduce((a, o) => a * 256 + Number(o), 0)
  const jobs: Array<{ source: string }> = []
  for (let i = 0; i < count; i++) for (let j = 0; j < perSource; j++) jobs.push({ source: ipv4(first + i) })
  const answers: Record<string, Answer[]> = {}
  let retries = 0
  let next = 0
  // A few hundred at a time: enough to be quick, few enough for two l4lbs on a shared box.
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const { source } = jobs[next++]!
      let answer = await ask(host, port, ANSWER_TIMEOUT_MS, source)
      // A timeout is retried (twice at most, counted): on a starved box a slow accept is not
      // a wrong answer. A path that black-holes a source still fails all three.
      for (let retry = 0; retry < 2 && !answer.ok && answer.error === 'timeout'; retry++) {
        retries++
        answer = await ask(host, port, ANSWER_TIMEOUT_MS, source)
      }
      ;(answers[source] ??= []).push(answer)
    }
  }
  await Promise.all(Array.from({ length: 200 }, worker))
  process.stdout.write(JSON.stringify({ answers, retries }) + '\n')
}

const [mode, ...args] = process.argv.slice(2)
if (mode === 'echo') echo(args)
else if (mode === 'loop') void loop(args[0]!, Number(args[1]))
else if (mode === 'burst') void burst(args[0]!, args[1]!, Number(args[2]), Number(args[3]))
else {
  process.stderr.write(`peer: unknown mode ${mode ?? ''}\n`)
  process.exit(2)
}
