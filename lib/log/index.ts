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
  #broken = false
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    // a terminal or pipe that went away (EPIPE) loses the lines, never the process
    out.on('error', () => {
      this.#broken = true
    })
  }
  write(line: string): void {
    if (this.#broken) return
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
  /**
   * Writes out what is buffered, then resolves; call before process.exit. Never hangs: it
   * gives up after `timeoutMs`, and a stdout whose reader has gone (EPIPE) drops what is left.
   */
  flush(timeoutMs?: number): Promise<void>
}

const FLUSH_TIMEOUT_MS = 1000

export function createLogger(config: LogConfig, stream?: DestinationStream): LoggerHandle {
  const options = { level: config.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.epochTime }
  if (stream) return { logger: pino(options, stream), flush: () => Promise.resolve() }
  if (config.format === 'pretty') return { logger: pino(options, new PrettyStream()), flush: () => Promise.resolve() }
  const destination = pino.destination({ dest: 1, sync: false })
  // A log reader that went away must cost us the log lines, not the process: no crash on the
  // 'error', and no flushSync at exit (sonic-boom retries EPIPE there forever).
  let broken = false
  destination.on('error', () => {
    broken = true
  })
  const logger = pino(options, destination)
  let flushed: Promise<void> | undefined
  return {
    logger,
    // once: a second stop signal while the first one flushes waits for the same end()
    flush: (timeoutMs = FLUSH_TIMEOUT_MS) =>
      (flushed ??= new Promise<void>((resolve) => {
        if (broken) return resolve()
        const timer = setTimeout(resolve, timeoutMs)
        const done = (): void => {
          clearTimeout(timer)
          resolve()
        }
        destination.once('close', done)
        destination.once('error', done)
        destination.end()
      })),
  }
}
