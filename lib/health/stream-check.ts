/**
 * What the TCP-based checks (tcp, send-expect, http) share: connect, write the check's request,
 * read the reply until the check's judge decides, all bounded by `timeoutMs`. A check type is a
 * `Dialogue`: what to write after connecting and how to judge what comes back.
 */
import net from 'node:net'
import { errorCode } from '../errors.js'
import type { Clock } from './clock.js'
import type { CheckResult, CheckTarget, RunningCheck } from './checks.js'
import type { ResolvedCheckOptions } from './options.js'

/** A reply is read up to this many bytes; enough for any banner or status line we match. */
export const MAX_REPLY_BYTES = 4096

export interface Verdict {
  ok: boolean
  error?: string
}

export interface Dialogue {
  /** Bytes to write once connected; null passes the check on connect (a plain TCP check). */
  request(target: CheckTarget, port: number, options: ResolvedCheckOptions): Buffer | null
  /** Decides from the reply so far; null while more bytes could change the answer; `eof`: none will come. */
  judge(reply: Buffer, options: ResolvedCheckOptions, eof: boolean): Verdict | null
}

const EMPTY = Buffer.alloc(0)

/** Runs one check over TCP against `target` (on `options.port` when set). */
export function startStreamCheck(target: CheckTarget, options: ResolvedCheckOptions, clock: Clock, dialogue: Dialogue): RunningCheck {
  const at = clock.now()
  const port = options.port ?? target.port
  let verdict: (Verdict & { durationMs: number }) | null = null
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

  function finish(v: Verdict): void {
    if (verdict) return
    verdict = { ...v, durationMs: clock.now() - at }
    socket.destroy()
  }

  socket.once('close', () => {
    clock.clearTimeout(timer)
    const v = verdict ?? { ok: false, error: 'connection closed', durationMs: clock.now() - at }
    settle(v.ok ? { at, durationMs: v.durationMs, ok: true } : { at, durationMs: v.durationMs, ok: false, error: v.error ?? 'failed' })
  })

  socket.on('error', (err) => finish({ ok: false, error: errorCode(err) }))

  socket.once('connect', () => {
    connected = true
    const request = dialogue.request(target, port, options)
    if (request === null) {
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
    const bytes = options.sendProxyLocal ? Buffer.concat([options.sendProxyLocal, request]) : request
    if (bytes.length > 0) socket.write(bytes)
  })

  socket.on('data', (chunk: Buffer) => {
    if (verdict) return
    reply = reply.length === 0 ? chunk : Buffer.concat([reply, chunk])
    if (reply.length > MAX_REPLY_BYTES) reply = reply.subarray(0, MAX_REPLY_BYTES)
    const v = dialogue.judge(reply, options, false)
    if (v) finish(v)
  })

  socket.once('end', () => {
    if (verdict) return
    finish(dialogue.judge(reply, options, true) ?? { ok: false, error: 'connection closed' })
  })

  return {
    done,
    cancel() {
      finish({ ok: false, error: 'cancelled' })
    },
  }
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
