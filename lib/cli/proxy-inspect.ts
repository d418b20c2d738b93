/**
 * `l4lb proxy-inspect -l :PORT`: what an upstream balancer really sends, printed for people
 * (lib/proxy-protocol does the listening and the decoding). Runs until SIGINT/SIGTERM.
 */
import { formatHostPort, parseHostPort } from '../address/index.js'
import { parseDuration } from '../config/index.js'
import { L4lbError } from '../errors.js'
import { startInspector } from '../proxy-protocol/index.js'
// a cycle with index.ts, harmless: ExitError is only used when the command runs
import { EXIT_USAGE, ExitError } from './index.js'

export async function runProxyInspect(opts: { listen: string; timeout?: string }): Promise<void> {
  let host: string
  let port: number
  try {
    const hp = parseHostPort(opts.listen.trim(), '::', true)
    host = hp.host === 'localhost' ? '127.0.0.1' : hp.host
    port = hp.port
  } catch (err) {
    throw usage(`--listen ${JSON.stringify(opts.listen)}: ${err instanceof L4lbError ? err.message.replace(/^"[^"]*": /, '') : String(err)}`)
  }
  let timeoutMs: number | undefined
  if (opts.timeout !== undefined) {
    const ms = parseDuration(opts.timeout)
    if (typeof ms !== 'number' || ms <= 0) throw usage(`--timeout ${JSON.stringify(opts.timeout)}: ${typeof ms === 'string' ? ms : 'must be more than 0'}`)
    timeoutMs = ms
  }
  const inspector = await startInspector({ host, port, out: process.stdout, ...(timeoutMs === undefined ? {} : { timeoutMs }) })
  const bound = inspector.address()
  process.stdout.write(`proxy-inspect listening on ${formatHostPort(bound.address, bound.port)} (Ctrl-C to stop)\n`)
  const stop = (): void => {
    inspector.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

function usage(message: string): ExitError {
  return new ExitError(EXIT_USAGE, message)
}
