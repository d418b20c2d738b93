// One rule for what happens to a flow whose backend leaves (lib/flow/policy.ts), TCP and UDP alike.
import t from 'tap'
import { dispositionOf, type Disposition } from '../../lib/flow/index.js'
import type { BackendState } from '../../lib/pool/index.js'

const keep = { onDown: 'keep', udpKeepOnDown: false } as const
const shutdown = { onDown: 'shutdown', udpKeepOnDown: false } as const
const udpKeep = { onDown: 'keep', udpKeepOnDown: true } as const

// [story, state, settings, established, movable (udp), expected]
const rows: Array<[string, BackendState, typeof keep | typeof shutdown | typeof udpKeep, boolean, boolean, Disposition]> = [
  ['a drained backend keeps every tcp connection', 'drain', shutdown, true, false, 'stay'],
  ['a drained backend keeps every udp session', 'drain', keep, true, true, 'stay'],
  ['a tcp connection still connecting to a down backend moves', 'down', keep, false, false, 'move'],
  ['… also under on-down shutdown (nothing forwarded, nothing lost)', 'down', shutdown, false, false, 'move'],
  ['… and to a backend put in maint', 'maint', keep, false, false, 'move'],
  ['an established tcp connection stays on a down backend with on-down keep', 'down', keep, true, false, 'stay'],
  ['an established tcp connection is cut on a down backend with on-down shutdown', 'down', shutdown, true, false, 'cut'],
  ['maint never cuts a tcp connection, even with on-down shutdown', 'maint', shutdown, true, false, 'stay'],
  ['a udp session moves off a down backend (on its next datagram)', 'down', keep, true, true, 'move'],
  ['a udp session is cut with on-down shutdown', 'down', shutdown, true, true, 'cut'],
  ['udpKeepOnDown keeps a udp session on a down backend', 'down', udpKeep, true, true, 'stay'],
  ['a udp session moves off a maint backend', 'maint', keep, true, true, 'move'],
  ['udpKeepOnDown keeps it on maint too', 'maint', udpKeep, true, true, 'stay'],
  ['nothing happens to flows of an up backend', 'up', shutdown, true, true, 'stay'],
  ['nor of one starting', 'starting', shutdown, false, false, 'stay'],
]

for (const [story, state, settings, established, movable, expected] of rows) {
  t.equal(dispositionOf(state, settings, established, movable), expected, story)
}
