/**
 * The `udp` check: send `send` on a connected datagram socket; pass when a reply matches one of
 * `expect` (any reply when none is set); fail on ICMP port unreachable (ECONNREFUSED on the
 * connected socket) or on timeout. Connecting makes the kernel report the ICMP error and drop
 * datagrams from anyone but the target.
 */
import dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import { errorCode } from '../errors.js'
import type { CheckKind, CheckResult, CheckTarget, RunningCheck } from './checks.js'
import type { Clock } from './clock.js'
import type { ResolvedCheckOptions } from './options.js'

export function startUdpCheck(target: CheckTarget, options: ResolvedCheckOptions, clock: Clock): RunningCheck {
  const at = clock.now()
  const port = options.port ?? target.port
  let settle!: (result: CheckResult) => void
  const done = new Promise<CheckResult>((resolve) => {
    settle = resolve
  })
  let verdict: { ok: boolean; error?: string; durationMs: number } | null = null
  let lastMismatch: Buffer | null = null
  let socket: dgram.Socket
  try {
    socket = dgram.createSocket({ type: target.family === 6 || isIPv6(target.host) ? 'udp6' : 'udp4' })
  } catch (err) {
    return { done: Promise.resolve({ at, durationMs: 0, ok: false, error: errorCode(err) }), cancel() {} }
  }

  const timer = clock.setTimeout(() => finish(false, 'timeout'), options.timeoutMs)

  function finish(ok: boolean, error?: string): void {
    if (verdict) return
    verdict = { ok, error, durationMs: clock.now() - at }
    clock.clearTimeout(timer)
    try {
      socket.close()
    } catch {
      settleNow()
    }
  }

  function settleNow(): void {
    const v = verdict ?? { ok: false, error: 'closed', durationMs: clock.now() - at }
    settle(v.ok ? { at, durationMs: v.durationMs, ok: true } : { at, durationMs: v.durationMs, ok: false, error: v.error ?? 'failed' })
  }

  socket.once('close', settleNow)
  socket.on('error', (err) => finish(false, errorCode(err)))
  socket.on('message', (msg: Buffer) => {
    if (options.expect.length === 0) return finish(true)
    const matched = options.expect.some((want) =>
      options.expectMatch === 'contains' ? msg.includes(want) : msg.length >= want.length && msg.subarray(0, want.length).equals(want),
    )
    // A stray or late reply (an earlier check's) may not match; keep waiting until the timeout.
    if (matched) finish(true)
    else if (verdict === null) lastMismatch = msg
  })
  socket.once('connect', () => {
    if (verdict) return
    socket.send(options.sendBytes)
  })
  try {
    socket.connect(port, target.host)
  } catch (err) {
    finish(false, errorCode(err))
  }

  return {
    done: done.then((r) => (!r.ok && r.error === 'timeout' && lastMismatch ? { ...r, error: `expect mismatch: got ${lastMismatch.length} bytes` } : r)),
    cancel() {
      finish(false, 'cancelled')
    },
  }
}

export const udpCheck: CheckKind = {
  // There is no connect to pass on: a datagram must go out and one must come back.
  validate: (spec) => (spec.send === undefined || spec.send.length === 0 ? [{ key: 'send', value: undefined, problem: 'a udp check needs bytes to send' }] : []),
  run: startUdpCheck,
}
