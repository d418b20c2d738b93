/**
 * `l4lb demo` (what `npm start` runs): three local TCP echo backends that greet with their name,
 * and the balancer in front of them, so a new user sees it work with `nc` in ten seconds.
 */
import net, { type Server } from 'node:net'
import { configFromFlags } from '../config/index.js'
import { createLogger } from '../log/index.js'
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
  const { logger, flush } = createLogger(config.log)
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
