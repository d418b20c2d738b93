import net from 'node:net'
import { errorCode } from '../errors.js'
import type { Clock } from './clock.js'
import { startUdpCheck } from './udp-check.js'
import { MAX_REPLY_BYTES, type ResolvedCheckOptions } from './options.js'

export interface CheckTarget {
  /** The pool's backend id; events and lookups use it. */
  readonly id: number
  /** Canonical `host:port`; a reload keeps a target's state only when id and name persist. */
  readonly name: string
  /** An address resolved at load (no DNS per check); a host name works but is looked up each time. */
  readonly host: string
  readonly port: number
  readonly family?: 4 | 6
  /**
   * Where this target's counter starts when the prober first sees it, instead of the options'
   * initial state: a backend that was already serving when a reload changed its check settings
   * starts 'up', so it is not taken out of rotation by the reconfiguration itself.
   */
  readonly initial?: 'up' | 'down'
}

export interface CheckResult {
  /** When the check started (epoch ms). */
  readonly at: number
  readonly durationMs: number
  readonly ok: boolean
  /** 'ECONNREFUSED', 'timeout', 'reply timeout', 'expect mismatch: got "X"', 'http status 503', … */
  readonly error?: string
  /** Set on data-path connect failures reported through observePassive. */
  readonly passive?: true
}

/** One check in flight. `done` settles only after the socket has closed, never rejects. */
export interface RunningCheck {
  readonly done: Promise<CheckResult>
  /** Destroys the socket; `done` then settles with error 'cancelled'. */
  cancel(): void
}

/** The prober calls this per check; tests may substitute a fake. */
export type CheckRunner = (target: CheckTarget, options: ResolvedCheckOptions, clock: Clock) => RunningCheck

interface Verdicted {
  ok: boolean
  error?: string
}

/**
 * Runs one TCP, send-expect or HTTP check against `target` (on `options.port` when set).
 * The whole check — connect and reply — is bounded by `options.timeoutMs`.
 */
export const startCheck: CheckRunner = (target, options, clock) => {
  if (options.type === 'udp') return startUdpCheck(target, options, clock)
  const at = clock.now()
  const port = options.port ?? target.port
  let verdict: (Verdicted & { durationMs: number }) | null = null
  let connected = false
  let reply: Buffer = EMPTY
  let settle!: (result: CheckResult) => void
  const done = new Promise<CheckResult>((resolve) => {
    settle = resolve
  })

  let socket: net.Socket
  try {
    socket = net.connect({ host: target.host, port, family: target.family, noDelay: true })
  } catch (err) {
    // Bad input (a port out of range) throws synchronously; it is still just a failed check.
    return { done: Promise.resolve({ at, durationMs: 0, ok: false, error: errorCode(err) }), cancel() {} }
  }

  // After a verdict the timer stays armed as a backstop for a close that hangs (a pending write).
  const timer = clock.setTimeout(() => {
    if (verdict) socket.destroy()
    else finish({ ok: false, error: connected ? 'reply timeout' : 'timeout' })
  }, options.timeoutMs)

  function finish(v: Verdicted): void {
    if (verdict) return
    verdict = { ...v, durationMs: clock.now() - at }
    socket.destroy()
  }

  socket.once('close', () => {
    clock.clearTimeout(timer)
    const v = verdict ?? { ok: false, error: 'connection closed', durationMs: clock.now() - at }
    const result: CheckResult = v.ok ? { at, durationMs: v.durationMs, ok: true } : { at, durationMs: v.durationMs, ok: false, error: v.error ?? 'failed' }
    settle(result)
  })

  socket.on('error', (err) => finish({ ok: false, error: errorCode(err) }))

  socket.once('connect', () => {
    connected = true
    if (options.type === 'tcp') {
      if (options.sendProxyLocal) {
        // Passed already; hand the header to the kernel before closing so the backend logs a
        // health check instead of a broken PROXY connection.
        verdict = { ok: true, durationMs: clock.now() - at }
        socket.write(options.sendProxyLocal, () => socket.destroy())
      } else {
        finish({ ok: true })
      }
      return
    }
    if (options.type === 'http') {
      socket.write(options.sendProxyLocal ? Buffer.concat([options.sendProxyLocal, httpRequest(target, port, options)]) : httpRequest(target, port, options))
    } else if (options.sendBytes.length > 0) {
      socket.write(options.sendBytes)
    }
  })

  socket.on('data', (chunk: Buffer) => {
    if (verdict) return
    reply = reply.length === 0 ? chunk : Buffer.concat([reply, chunk])
    if (reply.length > MAX_REPLY_BYTES) reply = reply.subarray(0, MAX_REPLY_BYTES)
    const v = options.type === 'http' ? judgeHttp(reply, options, false) : judgeExpect(reply, options, false)
    if (v) finish(v)
  })

  socket.once('end', () => {
    if (verdict) return
    const v = options.type === 'http' ? judgeHttp(reply, options, true) : judgeExpect(reply, options, true)
    finish(v ?? { ok: false, error: 'connection closed' })
  })

  return {
    done,
    cancel() {
      finish({ ok: false, error: 'cancelled' })
    },
  }
}

const EMPTY = Buffer.alloc(0)

/** Runs one check outside any prober (the CLI's `check` subcommand). */
export function checkOnce(target: CheckTarget, options: ResolvedCheckOptions, clock: Clock): Promise<CheckResult> {
  return startCheck(target, options, clock).done
}

/**
 * Decides a send-expect reply. Returns null while more bytes could still change the answer;
 * `eof` says none will come.
 */
export function judgeExpect(reply: Buffer, options: Pick<ResolvedCheckOptions, 'expect' | 'expectMatch'>, eof: boolean): Verdicted | null {
  let possible = false
  for (const want of options.expect) {
    if (options.expectMatch === 'contains') {
      if (reply.includes(want)) return { ok: true }
      possible = true
    } else if (reply.length >= want.length) {
      if (reply.subarray(0, want.length).equals(want)) return { ok: true }
    } else if (want.subarray(0, reply.length).equals(reply)) {
      possible = true
    }
  }
  if (possible && !eof && reply.length < MAX_REPLY_BYTES) return null
  if (reply.length === 0) return { ok: false, error: 'connection closed before reply' }
  return { ok: false, error: `expect mismatch: got ${quoteBytes(reply)}` }
}

/** Decides an HTTP reply from its status line; the body is never read. */
export function judgeHttp(reply: Buffer, options: Pick<ResolvedCheckOptions, 'httpStatusOk'>, eof: boolean): Verdicted | null {
  const lineEnd = reply.indexOf('\r\n')
  if (lineEnd === -1) {
    if (!eof && reply.length < MAX_REPLY_BYTES) return null
    if (reply.length === 0) return { ok: false, error: 'connection closed before reply' }
    return { ok: false, error: `http bad response: got ${quoteBytes(reply)}` }
  }
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(reply.toString('latin1', 0, lineEnd))
  if (!match?.[1]) return { ok: false, error: `http bad response: got ${quoteBytes(reply.subarray(0, lineEnd))}` }
  const status = Number(match[1])
  return options.httpStatusOk(status) ? { ok: true } : { ok: false, error: `http status ${status}` }
}

function httpRequest(target: CheckTarget, port: number, options: ResolvedCheckOptions): Buffer {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  return Buffer.from(
    `GET ${options.httpPath} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: l4lb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n`,
    'latin1',
  )
}

const QUOTE_MAX_BYTES = 32

/** Bytes as a one-line quoted string for logs: printable ASCII kept, the rest escaped, truncated. */
export function quoteBytes(bytes: Buffer): string {
  let out = '"'
  const n = Math.min(bytes.length, QUOTE_MAX_BYTES)
  for (let i = 0; i < n; i++) {
    const b = bytes[i] as number
    if (b === 0x22 || b === 0x5c) out += '\\' + String.fromCharCode(b)
    else if (b === 0x0d) out += '\\r'
    else if (b === 0x0a) out += '\\n'
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b)
    else out += '\\x' + b.toString(16).padStart(2, '0')
  }
  out += '"'
  if (bytes.length > QUOTE_MAX_BYTES) out += ` (+${bytes.length - QUOTE_MAX_BYTES} bytes)`
  return out
}
