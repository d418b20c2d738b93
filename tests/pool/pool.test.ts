import t from 'tap'
import { MAX_QUEUE, Pool, PASSIVE_AVOID_MS, RAMP_STEPS, WEIGHT_SCALE, type PoolClock } from '../../lib/pool/index.js'
import type { BackendConfig } from '../../lib/config/index.js'

function backend(name: string, extra: Partial<BackendConfig> = {}): BackendConfig {
  const [host, port] = name.split(':') as [string, string]
  return { name, host, port: Number(port), family: 4, weight: 1, backup: false, checkPort: undefined, srv: false, maxConns: 0, ...extra }
}

/** Timers that fire only when the test advances time. */
class FakeClock implements PoolClock {
  time = 1_000_000
  readonly timers: Array<{ at: number; fn: () => void }> = []
  scheduled = 0
  now(): number {
    return this.time
  }
  setTimeout(fn: () => void, delayMs: number): unknown {
    this.scheduled++
    const timer = { at: this.time + delayMs, fn }
    this.timers.push(timer)
    return timer
  }
  clearTimeout(handle: unknown): void {
    const i = this.timers.indexOf(handle as { at: number; fn: () => void })
    if (i >= 0) this.timers.splice(i, 1)
  }
  advance(ms: number): void {
    const end = this.time + ms
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at)
      const next = this.timers[0]
      if (!next || next.at > end) break
      this.timers.shift()
      this.time = next.at
      next.fn()
    }
    this.time = end
  }
}

const configs = [backend('10.0.0.1:80'), backend('10.0.0.2:80'), backend('10.0.0.3:80')]
const addresses = configs.map((c) => c.host)

function pool(options: { balance?: string; slowStartMs?: number; clock?: PoolClock; backends?: BackendConfig[]; checked?: boolean } = {}): Pool {
  const backends = options.backends ?? configs
  return new Pool({
    name: 'test',
    balance: options.balance ?? 'round-robin',
    backends,
    addresses: backends.map((c) => c.host),
    checked: options.checked ?? false,
    slowStartMs: options.slowStartMs ?? 0,
    ...(options.clock ? { clock: options.clock } : {}),
  })
}

/** How many of `n` picks each backend got. */
function shares(p: Pool, n: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const b = p.pick(i * 2654435761)
    if (b) out[b.name] = (out[b.name] ?? 0) + 1
  }
  return out
}

t.test('slow start: a backend that comes back ramps from near zero to its full share, weight 1 included', async (t) => {
  const clock = new FakeClock()
  const p = pool({ slowStartMs: 30_000, clock, backends: configs.slice(0, 2), checked: true })
  for (const b of p.backends) p.setHealth(b.id, true, 'first check passed')
  t.same(shares(p, 1000), { '10.0.0.1:80': 500, '10.0.0.2:80': 500 }, 'no ramp at start: backends there from the start serve at once')
  t.equal(clock.timers.length, 0, 'and no ramp timer')
  const second = p.backends[1]!
  p.setHealth(second.id, false, 'down')
  p.setHealth(second.id, true, 'up again')
  // Full weight is 1 × WEIGHT_SCALE; the ramp starts at the smallest step, 1.
  const atStart = shares(p, 1700)['10.0.0.2:80'] ?? 0
  t.equal(atStart, 100, `at 0 s: 1/(1+${WEIGHT_SCALE}) of picks (${atStart} of 1700)`)
  clock.advance(15_000)
  const halfway = (shares(p, 2400)['10.0.0.2:80'] ?? 0) / 2400
  t.ok(halfway > 0.3 && halfway < 0.36, `at 15 s about 8/24 of picks (${halfway.toFixed(3)})`)
  clock.advance(15_000)
  t.same(shares(p, 1000), { '10.0.0.1:80': 500, '10.0.0.2:80': 500 }, 'at 30 s: its full share')
  t.equal(clock.timers.length, 0, 'the ramp timer stops with the ramp')
  t.ok(clock.scheduled <= RAMP_STEPS + 1, `the picker was rebuilt on ${clock.scheduled} ticks (at most ${RAMP_STEPS + 1}), not per connection`)
})

t.test('slow start also applies after maint and to a backend a reload added', async (t) => {
  const clock = new FakeClock()
  const p = pool({ slowStartMs: 10_000, clock, backends: configs.slice(0, 2) })
  p.setAdmin(p.backends[1]!.id, 'maint')
  p.setAdmin(p.backends[1]!.id, 'enabled')
  t.equal(p.weightOf(p.backends[1]!), 1, 'leaving maint starts at the smallest step')
  t.equal(p.weightOf(p.backends[0]!), WEIGHT_SCALE, 'the other serves at full (scaled) weight')
  p.update({ balance: 'round-robin', backends: configs, addresses, checked: true, slowStartMs: 10_000 })
  const added = p.byName('10.0.0.3:80')!
  p.setHealth(added.id, true, 'first check passed')
  t.equal(p.weightOf(added), 1, "a reload's new backend ramps on its first up")
  clock.advance(10_000)
  t.same(p.backends.map((b) => p.weightOf(b)), [WEIGHT_SCALE, WEIGHT_SCALE, WEIGHT_SCALE], 'all at full weight after the period')
})

t.test('round-robin keeps its place when the picker is rebuilt', async (t) => {
  const p = pool({ backends: [...configs, backend('10.0.0.9:80', { backup: true })] })
  t.same([p.pick(0)!.name, p.pick(0)!.name], ['10.0.0.1:80', '10.0.0.2:80'])
  // A change that rebuilds (the backup's health) must not send the next pick back to the first.
  p.setAdmin(p.byName('10.0.0.9:80')!.id, 'maint')
  t.equal(p.pick(0)!.name, '10.0.0.3:80', 'the sequence goes on after a rebuild')
  t.equal(p.pick(0)!.name, '10.0.0.1:80')
  p.update({ balance: 'round-robin', backends: [...configs, backend('10.0.0.9:80', { backup: true })], addresses: [...addresses, '10.0.0.9'], checked: false })
  t.equal(p.pick(0)!.name, '10.0.0.2:80', 'and after a reload that changed nothing (the picker is kept)')
})

t.test('a backend that refused is steered around for a while, but still used when it is the only one', async (t) => {
  const p = pool({ balance: 'maglev' })
  const hash = 12345
  const home = p.pick(hash)!
  p.observeConnectFailure(home, 'ECONNREFUSED')
  t.equal(home.connectErrors.get('ECONNREFUSED'), 1)
  const other = p.pick(hash)!
  t.not(other.name, home.name, `steered from ${home.name} to ${other.name}`)
  home.avoidUntil = Date.now() - 1
  t.equal(p.pick(hash)!.name, home.name, `back home after PASSIVE_AVOID_MS (${PASSIVE_AVOID_MS} ms)`)
  const alone = pool({ backends: configs.slice(0, 1) })
  alone.observeConnectFailure(alone.backends[0]!, 'ECONNREFUSED')
  t.equal(alone.pick(hash)?.name, '10.0.0.1:80', 'never refuses a client for it when nothing else is left')
})

t.test('backups serve only when no primary is usable; a connection that tried every primary gets one', async (t) => {
  const p = pool({ backends: [backend('10.0.0.1:80'), backend('10.0.0.9:80', { backup: true })], checked: true })
  for (const b of p.backends) p.setHealth(b.id, true, 'first check passed')
  t.equal(p.pick(1)!.name, '10.0.0.1:80')
  t.equal(p.usingBackups, false)
  const primary = p.byName('10.0.0.1:80')!
  t.equal(p.pick(1, new Set([primary.id]))!.name, '10.0.0.9:80', 'redispatch: every primary tried, a backup is next')
  // The native plane gets the same two sets: primaries, and the backups to redispatch to.
  const backupId = p.byName('10.0.0.9:80')!.id
  let exported = p.exportPickData()
  t.same(exported.entries.map((e) => e.slot), [primary.id], 'pick data: the primaries')
  t.same(exported.backup?.entries.map((e) => e.slot), [backupId], 'and the backups to redispatch to')
  p.setHealth(primary.id, false, '3 consecutive failed checks')
  t.equal(p.usingBackups, true)
  t.equal(p.usableCount, 1)
  t.equal(p.pick(1)!.name, '10.0.0.9:80')
  exported = p.exportPickData()
  t.same(exported.entries.map((e) => e.slot), [backupId], 'no primary usable: the backups are the pick data')
  t.equal(exported.backup, undefined, 'and nothing is left to redispatch to')
  p.setHealth(primary.id, true, '2 consecutive passed checks')
  t.equal(p.pick(1)!.name, '10.0.0.1:80', 'the primary takes over again')
})

t.test('a reload keeps what it may: health, admin state, counters; new backends start starting', async (t) => {
  const p = pool({ checked: true })
  const [a, b] = p.backends
  p.setHealth(a!.id, true, 'first check passed')
  p.setAdmin(b!.id, 'drain')
  p.connectionOpened(a!)
  const result = p.update({ balance: 'round-robin', backends: [configs[0]!, configs[1]!, backend('10.0.0.4:80')], addresses: ['10.0.0.1', '10.0.0.2', '10.0.0.4'], checked: true })
  t.same(result, { added: ['10.0.0.4:80'], removed: ['10.0.0.3:80'], kept: ['10.0.0.1:80', '10.0.0.2:80'] })
  t.equal(p.byName('10.0.0.1:80'), a, 'the same object')
  t.equal(a!.state, 'up')
  t.equal(a!.connectionsTotal, 1)
  t.equal(p.active[a!.id], 1, 'its active count survives')
  t.equal(b!.state, 'drain')
  t.equal(p.byName('10.0.0.4:80')!.state, 'starting')
  t.equal(p.byId(2)!.current, false, 'the removed backend is kept for its connections, out of the pool')
  t.not(p.byName('10.0.0.4:80')!.id, 2, 'slots are never reused')
})

t.test('least-conn still sees live counts after a reload added a backend that is not up yet', async (t) => {
  const p = pool({ balance: 'least-conn', backends: configs.slice(0, 2), checked: true })
  for (const b of p.backends) p.setHealth(b.id, true, 'first check passed')
  // The new backend is `starting`: the usable set is unchanged, but the counts array grew.
  p.update({ balance: 'least-conn', backends: configs, addresses, checked: true })
  t.equal(p.byName('10.0.0.3:80')!.state, 'starting')
  const first = p.byName('10.0.0.1:80')!
  const second = p.byName('10.0.0.2:80')!
  for (let i = 0; i < 3; i++) p.connectionOpened(first)
  const picks = new Set([p.pick(0)!.name, p.pick(0)!.name])
  t.same([...picks], [second.name], 'both picks go to the idle backend (a picker left on the old counts would alternate)')
})

t.test('maxConns: a full backend queues connections in order and hands a freed slot to the first', async (t) => {
  const p = pool({ backends: [backend('10.0.0.1:80', { maxConns: 2 }), backend('10.0.0.2:80')] })
  const [limited, open] = p.backends as [NonNullable<(typeof p.backends)[0]>, NonNullable<(typeof p.backends)[0]>]
  t.ok(p.tryTake(limited) && p.tryTake(limited), 'two slots')
  t.notOk(p.tryTake(limited), 'no third')
  t.ok(Array.from({ length: 5 }, () => p.tryTake(open)).every(Boolean), 'no limit without maxConns')
  const woken: string[] = []
  const waiter = (name: string) => ({ wake: () => woken.push(name) })
  const a = waiter('a')
  const b = waiter('b')
  const c = waiter('c')
  t.ok(p.enqueue(limited, a) && p.enqueue(limited, b) && p.enqueue(limited, c))
  t.equal(p.queued(limited), 3)
  p.dequeue(limited, b)
  t.equal(p.queued(limited), 2, 'a waiter that left is out of the queue')
  p.giveBack(limited)
  t.same(woken, ['a'], 'the freed slot goes to the first waiter')
  t.notOk(p.tryTake(limited), 'and stays taken: a newcomer cannot jump the queue')
  p.giveBack(limited)
  p.giveBack(limited)
  t.same(woken, ['a', 'c'])
  t.ok(p.tryTake(limited), 'an empty queue frees the slot itself')
  for (let i = 0; i < MAX_QUEUE; i++) p.enqueue(limited, waiter('x'))
  t.notOk(p.enqueue(limited, waiter('y')), `a queue holds at most ${MAX_QUEUE}`)
})

t.test('only a change the pickers see rebuilds them and tells a data plane that picks by itself', async (t) => {
  const p = pool({ slowStartMs: 10_000, clock: new FakeClock() })
  let rebuilds = 0
  p.onRebuild(() => rebuilds++)
  p.update({ balance: 'round-robin', backends: configs, addresses, checked: false, slowStartMs: 10_000 })
  t.equal(rebuilds, 0, 'a reload that changed nothing rebuilds nothing')
  p.setAdmin(p.backends[0]!.id, 'drain')
  t.equal(rebuilds, 1, 'a drain rebuilds once')
  p.setWeight(p.backends[1]!.id, 2)
  t.equal(rebuilds, 2, 'so does a weight change')
  p.update({ balance: 'maglev', backends: configs, addresses, checked: false, slowStartMs: 10_000 })
  t.equal(rebuilds, 3, 'and another algorithm')
})
