/**
 * systemd's sd_notify protocol (Type=notify). The protocol is one datagram on the unix socket
 * named by NOTIFY_SOCKET, but node:dgram cannot send on unix datagram sockets, so we hand the
 * message to `systemd-notify` (shipped with systemd wherever NOTIFY_SOCKET exists) with our PID;
 * the unit sets NotifyAccess=all so systemd accepts it from the child. A native addon would save
 * the fork, but a notify happens a handful of times per process life.
 */
import { execFile } from 'node:child_process'

export type NotifyState = 'READY=1' | 'RELOADING=1' | 'STOPPING=1'

/** Sends `state` (plus an optional STATUS= line); resolves when delivered or given up. No-op outside systemd. */
export function sdNotify(state: NotifyState, status?: string): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve()
  const args = [`--pid=${process.pid}`, state]
  // systemd ≥ 253 wants MONOTONIC_USEC with RELOADING=1 to order it against READY=1.
  if (state === 'RELOADING=1') args.push(`MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`)
  if (status) args.push(`STATUS=${status}`)
  return new Promise((resolve) => {
    execFile('systemd-notify', args, { timeout: 5000 }, () => resolve())
  })
}
