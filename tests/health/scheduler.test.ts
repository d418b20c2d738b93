// The prober's scheduling and state rules on a fake clock with scripted check results: exact
// intervals and exact counts without sleeping. Socket behaviour is covered in checks.test.ts
// and prober.test.ts.
import t from 'tap'
import { Prober, HISTORY_SIZE, type CheckOptions, type CheckTarget } from '../../lib/health/index.js'
import { EventLog, FakeChecks, FakeClock } from './helpers.js'

const target: CheckTarget = { id: 7, name: '10.0.0.7:5432', host: '10.0.0.7', port: 5432 }

function setup(options: Partial<CheckOptions>, verdict: (n: number) => string | true, durationMs = 0) {
  const clock = new FakeClock()
  const checks = new FakeChecks(clock, verdict, durationMs)
  const log = new EventLog()
  const prober = new Prober({ type: 'tcp', intervalMs: 1000, rise: 2, fall: 3, jitterRatio: 0, ...options }, [target], log.listener, {
    clock,
    runCheck: checks.run,
  })
  const t0 = clock.now()
  const gaps = (): number[] => checks.startedAt.slice(1).map((at, i) => at - (checks.startedAt[i] as number))
  const elapsed = (): number => clock.now() - t0
  return { clock, checks, log, prober, gaps, elapsed }
}

t.test('intervals follow HAProxy: inter when up, fastinter while changing, downinter when down', async (t) => {
  const script = [true, true, 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', true, true, true] as const
  const { clock, checks, log, prober, gaps } = setup({ fastIntervalMs: 100, downIntervalMs: 5000 }, (n) => script[n] ?? true)
  prober.start()
  await clock.advance(20_000)
  await prober.stop()
  // first check at once → up; +1000 pass; then a failing run at fastinter until down; downinter
  // before the first pass; fastinter while rising; inter once fully up again.
  t.same(gaps().slice(0, 7), [1000, 1000, 100, 100, 5000, 100, 1000])
  t.same(
    log.events.map((e) => [e.from, e.to, e.reason]),
    [
      ['starting', 'up', 'first check passed'],
      ['up', 'down', '3 consecutive failed checks (last: ECONNREFUSED)'],
      ['down', 'up', '2 consecutive passed checks'],
    ],
  )
  t.equal(checks.count, 8 + Math.floor((20_000 - 8300) / 1000), 'no extra checks')
})

t.test('a flapping target (alternating results) never changes state with rise=2/fall=3', async (t) => {
  const { clock, checks, log, prober } = setup({ initialState: 'fully-up' }, (n) => (n % 2 === 0 ? 'ECONNREFUSED' : true))
  prober.start()
  await clock.advance(30_000)
  await prober.stop()
  t.ok(checks.count >= 30, `${checks.count} checks ran`)
  t.same(log.events, [], 'no state change')
  t.equal(prober.isUp(target.id), true)

  const down = setup({ initialState: 'fully-down' }, (n) => (n % 2 === 0 ? true : 'ECONNREFUSED'))
  down.prober.start()
  await down.clock.advance(30_000)
  await down.prober.stop()
  t.same(down.log.events, [], 'alternating from down never comes up either')
  t.equal(down.prober.isUp(target.id), false)
})

t.test("initial state 'first-check': not up until the first check, which decides at once", async (t) => {
  const pass = setup({}, () => true)
  t.equal(pass.prober.isUp(target.id), false, 'not usable before any check')
  t.equal(pass.prober.snapshot()[0]?.state, 'starting')
  pass.prober.start()
  await pass.clock.advance(1)
  t.equal(pass.checks.count, 1)
  t.equal(pass.prober.isUp(target.id), true, 'one pass is enough')
  t.same(pass.log.events.map((e) => e.reason), ['first check passed'])
  await pass.prober.stop()

  const fail = setup({}, (n) => (n === 0 ? 'ECONNREFUSED' : true))
  fail.prober.start()
  await fail.clock.advance(1)
  t.same(
    fail.log.events.map((e) => [e.from, e.to, e.up, e.reason, e.lastError]),
    [['starting', 'down', false, 'first check failed (ECONNREFUSED)', 'ECONNREFUSED']],
  )
  await fail.clock.advance(1000)
  t.equal(fail.prober.isUp(target.id), false, 'after a failed first check, one pass is not enough')
  await fail.clock.advance(1000)
  t.equal(fail.prober.isUp(target.id), true, 'rise passes bring it up')
  await fail.prober.stop()
})

t.test("initial states 'up' and 'fully-down' are usable/unusable at once, without events", async (t) => {
  const up = setup({ initialState: 'up' }, () => 'timeout')
  t.equal(up.prober.isUp(target.id), true)
  up.prober.start()
  await up.clock.advance(1)
  t.same(up.log.events.map((e) => e.reason), ['1 failed check (last: timeout)'], "HAProxy 'up': the first failure takes it down")
  await up.prober.stop()

  const down = setup({ initialState: 'fully-down' }, () => true)
  t.equal(down.prober.isUp(target.id), false)
  down.prober.start()
  await down.clock.advance(1500)
  t.same(down.log.events.map((e) => e.reason), ['2 consecutive passed checks'])
  await down.prober.stop()
})

t.test('passive failures count toward fall exactly like failed checks', async (t) => {
  const { checks, log, prober } = setup({ initialState: 'fully-up', fastIntervalMs: 100 }, () => true)
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  t.equal(prober.isUp(target.id), true, 'still up after fall-1')
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  t.equal(prober.isUp(target.id), false, 'down at exactly fall')
  t.same(log.events.map((e) => [e.to, e.reason]), [['down', '3 consecutive data-path connect failures (last: ECONNREFUSED)']])
  t.same(
    prober.history(target.id).map((r) => [r.ok, r.passive, r.error]),
    [
      [false, true, 'ECONNREFUSED'],
      [false, true, 'ECONNREFUSED'],
      [false, true, 'ECONNREFUSED'],
    ],
  )

  prober.observePassive(target.id, true)
  prober.observePassive(target.id, true)
  t.equal(prober.isUp(target.id), false, 'data-path successes never count toward rise')
  t.equal(checks.count, 0, 'never started: no checks')
  await prober.stop()
})

t.test('a data-path success ends a failure run of an up target; a passive failure brings the next check forward', async (t) => {
  const { clock, checks, log, prober } = setup({ initialState: 'fully-up', fastIntervalMs: 100 }, (n) => (n === 0 ? true : 'ECONNREFUSED'))
  prober.start()
  await clock.advance(1) // first check passes; next one due at +1000
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  prober.observePassive(target.id, true)
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  t.equal(prober.isUp(target.id), true)
  t.equal(prober.snapshot()[0]?.consecutiveFailed, 1, 'the success reset the run')
  await clock.advance(100)
  t.equal(checks.count, 2, 'the passive failure pulled the next check to fastinter')
  await clock.advance(100)
  t.same(log.events.map((e) => e.reason), ['3 consecutive failures: 2 failed checks, 1 data-path connect failure (last: ECONNREFUSED)'])
  await prober.stop()
})

t.test('never two concurrent checks of one target, even when checks outlast the interval', async (t) => {
  const { clock, checks, prober, gaps } = setup({ intervalMs: 100, timeoutMs: 300, initialState: 'fully-up' }, () => true, 300)
  prober.start()
  for (let i = 0; i < 10; i++) {
    prober.observePassive(target.id, false, 'ECONNREFUSED') // tries to pull checks forward
    prober.observePassive(target.id, true)
    await clock.advance(150)
  }
  await prober.stop()
  t.equal(checks.maxInFlight, 1)
  t.ok(checks.count >= 3)
  t.ok(gaps().every((g) => g >= 300), 'each check starts after the previous ended')
  t.equal(checks.inFlight, 0, 'stop() cancelled the one in flight')
})

t.test('history keeps exactly the last 10 results, oldest first', async (t) => {
  const { clock, prober, checks } = setup({ intervalMs: 100 }, (n) => (n % 5 === 4 ? `e${n}` : true))
  prober.start()
  await clock.advance(1450)
  await prober.stop()
  t.equal(checks.count, 15)
  const history = prober.history(target.id)
  t.equal(history.length, HISTORY_SIZE)
  t.same(
    history.map((r) => r.at),
    checks.startedAt.slice(5),
  )
  t.same(history.filter((r) => !r.ok).map((r) => r.error), ['e9', 'e14'])
  t.same(prober.snapshot()[0]?.history, history)
})

t.test('flap damping holds the up transition of a flapping target for holdMs', async (t) => {
  // rise=1/fall=1 so every result flips the counter: up, down, up, down, then passes.
  const script = [true, 'x', true, 'x', true, true, true, true, true, true] as const
  const flap = { maxTransitions: 2, windowMs: 10_000, holdMs: 350 }
  const { clock, log, prober } = setup({ intervalMs: 100, rise: 1, fall: 1, flap }, (n) => script[n] ?? true)
  prober.start()
  await clock.advance(1200)
  await prober.stop()
  t.same(
    log.events.map((e) => [e.from, e.to]),
    [
      ['starting', 'up'],
      ['up', 'down'],
      ['down', 'up'],
      ['up', 'down'],
      ['down', 'up'],
    ],
  )
  // Transitions before the 5th result: down, up, down = 3 > maxTransitions 2 → that pass holds.
  const held = log.events[4]
  t.match(held?.reason, /^\d+ consecutive passed checks over a 350 ms flap hold \(3 transitions in 10000 ms\)$/)
  t.equal(held?.up, true)
})

t.test('flap damping: a failure during the hold restarts it; the target stays down meanwhile', async (t) => {
  const script = [true, 'x', true, 'x', true, true, 'y', true, true, true, true, true, true, true] as const
  const flap = { maxTransitions: 2, windowMs: 10_000, holdMs: 300 }
  const { clock, log, prober, checks } = setup({ intervalMs: 100, rise: 1, fall: 1, flap }, (n) => script[n] ?? true)
  prober.start()
  await clock.advance(450) // checks 0..4: the 5th (a pass) starts the hold
  t.equal(checks.count, 5)
  t.equal(prober.isUp(target.id), false, 'held: still down')
  const status = prober.snapshot()[0]
  t.equal(status?.heldUntil, checks.startedAt[4]! + 300)
  await clock.advance(200) // checks 5 (pass) and 6 (fail): hold cancelled
  t.equal(prober.snapshot()[0]?.heldUntil, undefined)
  t.equal(log.events.length, 4, 'no up event during the hold')
  await clock.advance(100) // check 7 passes: a new hold starts (the window still has 3 transitions)
  t.equal(prober.isUp(target.id), false)
  const holdStart = checks.startedAt[7]!
  await clock.advance(500)
  t.equal(prober.isUp(target.id), true)
  const upEvent = log.events[4]
  t.equal(upEvent?.to, 'up')
  await prober.stop()
  const upCheck = checks.startedAt.find((at) => at >= holdStart + 300)
  t.ok(upCheck !== undefined && upCheck - holdStart < 400, 'a check lands right when the hold ends')
})

t.test('without flap damping the same sequence comes back at once', async (t) => {
  const script = [true, 'x', true, 'x', true] as const
  const { clock, log, prober } = setup({ intervalMs: 100, rise: 1, fall: 1 }, (n) => script[n] ?? true)
  prober.start()
  await clock.advance(450)
  await prober.stop()
  t.equal(log.events.length, 5)
  t.equal(log.events[4]?.reason, '1 passed check')
})

t.test('pause stops probing; resume re-applies the initial state and checks at once', async (t) => {
  const { clock, log, prober, checks } = setup({ intervalMs: 100 }, () => true)
  prober.start()
  await clock.advance(250)
  t.equal(checks.count, 3)
  prober.pause(target.id)
  await clock.advance(1000)
  t.equal(checks.count, 3, 'not probed in maintenance')
  t.equal(prober.snapshot()[0]?.paused, true)
  prober.resume(target.id)
  t.same(log.events.at(-1), {
    backendId: target.id,
    up: false,
    from: 'up',
    to: 'starting',
    reason: 'left maintenance, waiting for the first check',
  })
  await clock.advance(0)
  t.equal(checks.count, 4, 'checked at once')
  t.equal(prober.isUp(target.id), true)
  await prober.stop()
})

t.test('setTargets keeps the state of targets whose id and name persist', async (t) => {
  const other: CheckTarget = { id: 8, name: '10.0.0.8:5432', host: '10.0.0.8', port: 5432 }
  const { clock, prober, checks } = setup({ intervalMs: 100 }, () => true)
  prober.setTargets([target, other])
  prober.start()
  await clock.advance(50)
  t.equal(prober.isUp(7), true)
  t.equal(prober.isUp(8), true)
  const before = checks.count
  prober.setTargets([
    { ...target, host: '10.0.0.70' }, // same id + name: state kept
    { ...other, name: '10.0.0.9:5432' }, // same id, new name: a different backend
    { id: 9, name: '10.0.0.10:5432', host: '10.0.0.10', port: 5432 },
  ])
  t.equal(prober.isUp(7), true, 'kept')
  t.equal(prober.history(7).length, 1)
  t.equal(prober.isUp(8), false, 'renamed: starts afresh')
  t.same(prober.history(8), [])
  t.equal(prober.isUp(9), false, 'new: starting')
  await clock.advance(10)
  t.equal(checks.count, before + 2, 'new and renamed targets are checked right away')
  prober.setTargets([target])
  await clock.advance(1000)
  t.same(
    prober.snapshot().map((s) => s.id),
    [7],
  )
  t.throws(() => prober.setTargets([target, target]), { code: 'L4LB_ERR_CONFIG' })
  await prober.stop()
  t.equal(clock.pending, 0, 'no timers left')
})

t.test("type 'none': never probed, always up", async (t) => {
  const { clock, prober, checks } = setup({ type: 'none' }, () => 'x')
  prober.start()
  await clock.advance(10_000)
  t.equal(checks.count, 0)
  t.equal(prober.isUp(target.id), true)
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  prober.observePassive(target.id, false, 'ECONNREFUSED')
  t.equal(prober.isUp(target.id), true)
  t.equal(prober.isUp(99), false, 'unknown ids are not up')
  await prober.stop()
})

t.test('jitter spreads intervals within ±jitterRatio', async (t) => {
  const { clock, prober, gaps } = setup({ intervalMs: 1000, jitterRatio: 0.2 }, () => true)
  prober.start()
  await clock.advance(60_000)
  await prober.stop()
  const g = gaps()
  t.ok(g.length > 40)
  t.ok(g.every((x) => x >= 800 && x <= 1200), 'within bounds')
  t.ok(new Set(g.map(Math.round)).size > 5, 'actually spread')
})

t.test('a listener that throws does not break the prober', async (t) => {
  const clock = new FakeClock()
  const checks = new FakeChecks(clock, () => true)
  const prober = new Prober({ type: 'tcp', intervalMs: 100, jitterRatio: 0 }, [target], () => {
    throw new Error('listener bug')
  }, { clock, runCheck: checks.run })
  const errors: unknown[] = []
  const onUncaught = (err: unknown): void => {
    errors.push(err)
  }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => {
    process.off('uncaughtException', onUncaught)
  })
  prober.start()
  await clock.advance(350)
  await prober.stop()
  t.equal(checks.count, 4, 'checks kept running')
  t.equal(prober.isUp(target.id), true)
  t.equal(errors.length, 1)
})
