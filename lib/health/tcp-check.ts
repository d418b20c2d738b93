/** The `tcp` check: passes when the connect succeeds (HAProxy's default `check`). */
import type { CheckKind } from './checks.js'
import { startStreamCheck, type Dialogue } from './stream-check.js'

const connectOnly: Dialogue = {
  request: () => null,
  judge: () => ({ ok: true }),
}

export const tcpCheck: CheckKind = {
  validate: () => [],
  run: (target, options, clock) => startStreamCheck(target, options, clock, connectOnly),
}
