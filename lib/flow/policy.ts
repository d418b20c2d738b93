/**
 * What happens to a flow — a TCP connection or a UDP session — whose backend leaves the usable
 * set. One rule for both protocols (issue 13), in README "When a backend leaves":
 *
 * - `drain`: every flow stays; the backend only gets no new ones.
 * - a flow that has forwarded nothing yet (a TCP connection still connecting or about to retry)
 *   moves to the next pick: it loses nothing by moving.
 * - `down` with `onDown: shutdown` (database failover): every flow on it is cut.
 * - otherwise (`down` with `keep`, or `maint`) a flow that can move without losing bytes moves —
 *   a UDP session, on its next datagram, unless `udpKeepOnDown` keeps it (a game server holding
 *   state) — and one that cannot (an established TCP connection) stays until it ends.
 *
 * `maint` never cuts: it is the operator's "no new work, stop checking", as in HAProxy.
 */
import type { BackendState } from '../pool/index.js'

export type Disposition = 'stay' | 'move' | 'cut'

export interface FlowPolicySettings {
  readonly onDown: 'keep' | 'shutdown'
  readonly udpKeepOnDown: boolean
}

/**
 * `established`: bytes may have been forwarded (a spliced TCP connection; a UDP session always).
 * `movable`: it can change backend without losing bytes (a UDP session).
 */
export function dispositionOf(state: BackendState, settings: FlowPolicySettings, established: boolean, movable: boolean): Disposition {
  if (state === 'up' || state === 'drain' || state === 'starting') return 'stay'
  if (!established) return 'move'
  if (state === 'down' && settings.onDown === 'shutdown') return 'cut'
  if (movable && !settings.udpKeepOnDown) return 'move'
  return 'stay'
}
