/**
 * The `send-expect` check: write `send` (absent for protocols that greet first), pass when the
 * reply matches one of `expect` — PostgreSQL's SSLRequest answered 'S' or 'N', Redis PING/+PONG.
 */
import type { CheckKind, CheckProblem } from './checks.js'
import type { ResolvedCheckOptions } from './options.js'
import { MAX_REPLY_BYTES, quoteBytes, startStreamCheck, type Dialogue, type Verdict } from './stream-check.js'

/**
 * Decides a send-expect reply. Returns null while more bytes could still change the answer;
 * `eof` says none will come.
 */
export function judgeExpect(reply: Buffer, options: Pick<ResolvedCheckOptions, 'expect' | 'expectMatch'>, eof: boolean): Verdict | null {
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

const dialogue: Dialogue = {
  request: (_target, _port, options) => options.send,
  judge: judgeExpect,
}

/** Expected replies: at least one, none empty, each within what a check reads. */
function validateExpect(expect: readonly Buffer[] | undefined): CheckProblem[] {
  // Without an expectation the check would pass on connect: that is a tcp check, say so.
  if (expect === undefined || expect.length === 0) return [{ key: 'expect', value: undefined, problem: 'a send-expect check needs at least one expected reply' }]
  if (expect.some((e) => e.length === 0)) return [{ key: 'expect', value: '', problem: 'an expected reply must not be empty' }]
  const long = expect.find((e) => e.length > MAX_REPLY_BYTES)
  if (long) return [{ key: 'expect', value: `${long.length} bytes`, problem: `an expected reply must fit in ${MAX_REPLY_BYTES} bytes` }]
  return []
}

export const sendExpectCheck: CheckKind = {
  validate: (spec) => validateExpect(spec.expect),
  run: (target, options, clock) => startStreamCheck(target, options, clock, dialogue),
}
