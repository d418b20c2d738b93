import t from 'tap'
import { pino } from 'pino'
import { MAX_KEYS, RateLimitedLog } from '../../lib/log/rate-limit.js'

function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'debug', base: null, timestamp: false }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
  return { logger, lines }
}

// Each event is [time ms, key]; `written` lists the events (0-based) that produce a line and the
// suppressed count that line carries.
interface Scenario {
  name: string
  events: Array<[number, string]>
  written: Array<[number, number]>
}

const scenarios: Scenario[] = [
  { name: 'the first line of a key is written at once', events: [[0, 'a']], written: [[0, 0]] },
  { name: 'a storm within one second: one line', events: [[0, 'a'], [1, 'a'], [500, 'a'], [999, 'a']], written: [[0, 0]] },
  { name: 'the next line after the interval carries the suppressed count', events: [[0, 'a'], [1, 'a'], [2, 'a'], [1000, 'a']], written: [[0, 0], [3, 2]] },
  { name: 'keys are limited separately', events: [[0, 'a'], [1, 'b'], [2, 'a'], [3, 'b'], [4, 'c']], written: [[0, 0], [1, 0], [4, 0]] },
  { name: 'a sustained storm: one line per second, each with the count since the last', events: Array.from({ length: 31 }, (_, i) => [i * 100, 'x'] as [number, string]), written: [[0, 0], [10, 9], [20, 9], [30, 9]] },
  { name: 'after a quiet spell the next line has nothing suppressed', events: [[0, 'a'], [5000, 'a'], [5001, 'a'], [9000, 'a']], written: [[0, 0], [1, 0], [3, 1]] },
]

t.test('at most one line per key per second, with the suppressed count (fake clock)', async (t) => {
  for (const s of scenarios) {
    const { logger, lines } = capture()
    let now = 0
    const log = new RateLimitedLog(logger, 1000, () => now)
    const written: Array<[number, number]> = []
    s.events.forEach(([at, key], i) => {
      now = at
      const before = lines.length
      const wrote = log.write('warn', key, { reason: key, n: i }, 'connection refused')
      if (wrote !== (lines.length > before)) t.fail(`${s.name}: return value disagrees with what was written`)
      if (wrote) written.push([lines.at(-1)!.n as number, lines.at(-1)!.suppressed as number])
    })
    t.same(written, s.written, s.name)
    t.ok(lines.every((l) => l.msg === 'connection refused' && l.level === 40), `${s.name}: message and level kept`)
  }
})

t.test('levels: info, error and debug lines go out at their level', async (t) => {
  const { logger, lines } = capture()
  const log = new RateLimitedLog(logger, 1000, () => 0)
  log.write('info', 'i', {}, 'refused')
  log.write('error', 'e', {}, 'refused')
  log.write('debug', 'd', {}, 'refused')
  t.same(lines.map((l) => l.level), [30, 50, 20])
})

t.test('warn(fields, msg) is limited per message (EMFILE storms on accept)', async (t) => {
  const { logger, lines } = capture()
  let now = 0
  const log = new RateLimitedLog(logger, 1000, () => now)
  for (let i = 0; i < 1000; i++) log.warn({ code: 'EMFILE' }, 'accept failed')
  log.warn({ code: 'EMFILE' }, 'cannot open a connection to a backend')
  now = 1000
  log.warn({ code: 'EMFILE' }, 'accept failed')
  t.same(lines.map((l) => [l.msg, l.suppressed]), [['accept failed', 0], ['cannot open a connection to a backend', 0], ['accept failed', 999]])
  t.equal(log.suppressedTotal, 999)
  t.equal(log.pending('accept failed'), 0)
})

t.test('the key table is bounded: past MAX_KEYS distinct keys the rest share one window', async (t) => {
  const { logger, lines } = capture()
  const log = new RateLimitedLog(logger, 1000, () => 0)
  for (let i = 0; i < MAX_KEYS + 1000; i++) log.write('warn', `k${i}`, {}, 'x')
  t.equal(lines.length, MAX_KEYS + 1, 'one line per tracked key, and one for all the others')
  t.equal(log.suppressedTotal, 999)
})
