/**
 * The `http` check: `GET httpPath` over HTTP/1.1, judged by the status line alone (the body is
 * never read) against `httpStatus` — Patroni's `/primary` and `/replica` answer 200 or 503.
 */
import type { CheckKind, CheckProblem, CheckTarget } from './checks.js'
import type { ResolvedCheckOptions } from './options.js'
import { MAX_REPLY_BYTES, quoteBytes, startStreamCheck, type Dialogue, type Verdict } from './stream-check.js'

/** Decides an HTTP reply from its status line; the body is never read. */
export function judgeHttp(reply: Buffer, options: Pick<ResolvedCheckOptions, 'httpStatusOk'>, eof: boolean): Verdict | null {
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

/** '2xx', '200', '200,204', '2xx,301' → a predicate, or a problem for anything else. */
export function parseExpectStatus(spec: string): ((status: number) => boolean) | string {
  const exact = new Set<number>()
  const classes = new Set<number>()
  for (const raw of spec.split(',')) {
    const token = raw.trim().toLowerCase()
    if (/^[1-5]xx$/.test(token)) classes.add(Number(token[0]))
    else if (/^[1-5]\d\d$/.test(token)) exact.add(Number(token))
    else return 'must be a status like 200, 2xx or 200,204'
  }
  return (status) => exact.has(status) || classes.has(Math.floor(status / 100))
}

function validateHttp(httpPath: string, httpStatus: string): CheckProblem[] {
  const problems: CheckProblem[] = []
  // The path goes verbatim into the request line: refuse anything that could split it.
  if (!/^\/[\x21-\x7e]*$/.test(httpPath)) problems.push({ key: 'httpPath', value: httpPath, problem: 'must start with "/" and hold only visible ASCII' })
  const status = parseExpectStatus(httpStatus)
  if (typeof status === 'string') problems.push({ key: 'httpStatus', value: httpStatus, problem: status })
  return problems
}

const dialogue: Dialogue = { request: httpRequest, judge: judgeHttp }

export const httpCheck: CheckKind = {
  validate: (spec) => validateHttp(spec.httpPath, spec.httpStatus),
  run: (target, options, clock) => startStreamCheck(target, options, clock, dialogue),
}
