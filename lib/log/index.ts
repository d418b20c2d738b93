/**
 * The pino logger. JSON by default (one object per line, for journald and log shippers);
 * `pretty` is a small built-in formatter for a terminal (the demo) so we need no pino-pretty.
 * Writes are asynchronous (sonic-boom) so a connection's log line never blocks the data path.
 */
import { pino, type Logger, type DestinationStream } from 'pino'
import type { LogConfig } from '../config/index.js'

export type { Logger } from 'pino'

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' }
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg'])

/** Formats pino's JSON lines as `HH:MM:SS LEVEL msg key=value …`. */
export class PrettyStream implements DestinationStream {
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  write(line: string): void {
    let o: Record<string, unknown>
    try {
      o = JSON.parse(line) as Record<string, unknown>
    } catch {
      this.out.write(line)
      return
    }
    const time = new Date(typeof o.time === 'number' ? o.time : Date.now()).toISOString().slice(11, 19)
    let text = `${time} ${LEVEL_NAMES[o.level as number] ?? String(o.level)} ${String(o.msg ?? '')}`
    for (const [k, v] of Object.entries(o)) {
      if (SKIP.has(k)) continue
      text += ` ${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`
    }
    this.out.write(text + '\n')
  }
}

export interface LoggerHandle {
  readonly logger: Logger
  /** Writes out what is buffered; call before process.exit. */
  flush(): void
}

export function createLogger(config: LogConfig, stream?: DestinationStream): LoggerHandle {
  const options = { level: config.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.epochTime }
  if (stream) return { logger: pino(options, stream), flush: () => {} }
  if (config.format === 'pretty') return { logger: pino(options, new PrettyStream()), flush: () => {} }
  const destination = pino.destination({ dest: 1, sync: false })
  const logger = pino(options, destination)
  return {
    logger,
    flush: () => {
      try {
        destination.flushSync()
      } catch {
        // stdout already closed (EPIPE): nothing left to save.
      }
    },
  }
}
