/**
 * `l4lb demo` (what `npm start` runs): three local TCP echo backends that greet with their name,
 * and the balancer in front of them, so a new user sees it work with `nc` in ten seconds.
 */
import net, { type Server } from 'node:net'
import type { DestinationStream } from 'pino'
import { configFromFlags } from '../config/index.js'
import { createLogger, PrettyStream } from '../log/index.js'
import { Runtime } from '../runtime/index.js'
import { installSignals } from './index.js'

const BACKEND_NAMES = ['alpha', 'bravo', 'charlie']

export async function startEchoBackend(name: string, host = '127.0.0.1', port = 0): Promise<Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy())
    socket.write(`hello from backend ${name}\n`)
    socket.pipe(socket)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => resolve())
  })
  return server
}

/**
 * The demo's log lines name its backends (`backend=alpha`) instead of printing ports a new user
 * cannot tell apart: a presentation step between pino and the pretty printer, for the demo only
 * (real configs name backends by their host:port, which is also what hashing uses).
 */
export class NamedBackendsStream implements DestinationStream {
  constructor(readonly names: ReadonlyMap<string, string>, readonly inner: DestinationStream = new PrettyStream()) {}
  write(line: string): void {
    let o: Record<string, unknown>
    try {
      o = JSON.parse(line) as Record<string, unknown>
    } catch {
      return void this.inner.write(line)
    }
    const name = (a: unknown): unknown => (typeof a === 'string' ? this.names.get(a) ?? a : a)
    if (o.backend !== undefined) o.backend = name(o.backend)
    if (Array.isArray(o.backends)) o.backends = o.backends.map(name)
    this.inner.write(JSON.stringify(o) + '\n')
  }
}

export async function runDemo(opts: { port: string; balance: string }): Promise<void> {
  const backends = await Promise.all(BACKEND_NAMES.map((name) => startEchoBackend(name)))
  const backendAddresses = backends.map((s) => `127.0.0.1:${(s.address() as net.AddressInfo).port}`)
  const config = configFromFlags({
    name: 'demo',
    listen: [`127.0.0.1:${opts.port}`],
    backend: backendAddresses,
    balance: opts.balance,
    checkInterval: '1s',
    logFormat: 'pretty',
  })
  const names = new Map(backendAddresses.map((a, i) => [a, BACKEND_NAMES[i]!]))
  const { logger, flush } = createLogger(config.log, new NamedBackendsStream(names))
  const runtime = await Runtime.start(config, logger)
  const port = runtime.services.get('demo')!.tcp!.addresses()[0]!.port
  process.stdout.write(
    [
      '',
      `l4lb demo: balancing 127.0.0.1:${port} over ${BACKEND_NAMES.length} echo backends (${opts.balance})`,
      ...backendAddresses.map((a, i) => `  backend ${BACKEND_NAMES[i]} at ${a}`),
      '',
      `Try it:   nc 127.0.0.1 ${port}        (type a line, it echoes; Ctrl-D to close)`,
      `          for i in 1 2 3 4 5 6; do echo | nc -q1 127.0.0.1 ${port}; done`,
      'A line is logged per finished connection. Ctrl-C stops.',
      '',
    ].join('\n') + '\n',
  )
  process.on('exit', () => {
    for (const b of backends) b.close()
  })
  installSignals(runtime, flush, 2_000)
}
