/**
 * The status page in a real browser: Debian's chromium, headless, driven by playwright-core
 * (no browser download), against a real l4lb with backends this test starts and stops.
 */
import t from 'tap'
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { EchoBackend, whoAnswers } from '../helpers/index.js'
import { request, spawnWithAdmin } from '../admin/helpers.js'

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p))
type Playwright = typeof import('playwright-core')
const playwright = await import('playwright-core').catch(() => undefined) as Playwright | undefined
const skip = !CHROMIUM ? 'chromium not installed (Debian package chromium; .ci/run installs it)' : !playwright ? 'playwright-core not installed (npm ci)' : false

/** The check interval: the page must show a killed backend down within it (plus slack for a loaded box). */
const CHECK_INTERVAL_MS = 2000
const SLACK_MS = 1500
/** A backend whose banner is markup: the failed check quotes it, and the page must show it as text. */
const EVIL_BANNER = '<img src=x onerror=top.pwned=1>'

/** One browser for the file's tests: starting chromium is the slow part. */
let launched: Promise<import('playwright-core').Browser> | undefined
function browser(): Promise<import('playwright-core').Browser> {
  launched ??= playwright!.chromium.launch({
    executablePath: CHROMIUM,
    // Chromium refuses to run as root with its sandbox on; CI runs as root.
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  })
  return launched
}
t.teardown(async () => {
  if (launched) await (await launched).close()
})

/** The page's document, typed just enough (the tests compile without the DOM's types). */
interface Dom {
  querySelector(selector: string): { textContent: string | null; getAttribute(name: string): string | null } | null
}

t.test('the status page: live states, a killed backend goes down within one check interval, drain with the token, values escaped', { skip }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'l4lb-page-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const a = await new EchoBackend('ok-a').start()
  const b = await new EchoBackend('ok-b').start()
  const evil = await new EchoBackend('evil', (socket) => socket.end(EVIL_BANNER + '\n')).start()
  t.teardown(() => Promise.all([a.stop(), b.stop(), evil.stop()]))
  writeFileSync(path.join(dir, 'token'), 's3cret\n')
  const { lb, adminPort } = await spawnWithAdmin([
    '-l', '127.0.0.1:0', '-b', a.address, '-b', b.address, '-b', evil.address, '--name', 'shop', '--balance', 'round-robin',
    '--check', 'send-expect', '--check-expect', 'ok-', '--check-interval', `${CHECK_INTERVAL_MS}ms`, '--rise', '1', '--fall', '1',
    '--admin-token-file', path.join(dir, 'token'),
  ])
  t.teardown(() => lb.stop())

  const page = await (await browser()).newPage({ viewport: { width: 1360, height: 560 } })
  t.teardown(() => page.close())
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(err.message))
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/401|Unauthorized/.test(msg.text())) problems.push(msg.text())
  })
  await page.goto(`http://127.0.0.1:${adminPort}/`)

  // The token is asked for once, then the feed starts.
  await page.locator('#login').waitFor({ state: 'visible', timeout: 5000 })
  await page.fill('#token', 's3cret')
  await page.press('#token', 'Enter')
  // (addresses read while the servers listen: a stopped one has none)
  const rows = new Map([a, b, evil].map((x) => [x, `tr[data-service="shop"][data-backend="${x.address}"]`]))
  const row = (backend: EchoBackend): string => rows.get(backend)!
  await page.locator(`${row(a)} .state`).filter({ hasText: 'up' }).waitFor({ timeout: 5000 })
  t.equal(await page.locator(`${row(b)} .state`).textContent(), 'up')
  t.equal(await page.locator(`${row(evil)} .state`).textContent(), 'down')
  t.equal(await page.evaluate('localStorage.length + sessionStorage.length'), 0, 'the token is kept in memory only')
  t.equal(await page.locator('#token').inputValue(), '', 'and not left in the form')

  const why = await page.locator(`${row(evil)} td.why`).textContent()
  t.match(why, EVIL_BANNER, 'a backend\'s reply is shown as text')
  t.equal(await page.locator('#services img').count(), 0, 'and never becomes markup')
  t.equal(await page.evaluate('typeof globalThis.pwned === "undefined" ? undefined : globalThis.pwned'), undefined, 'nothing it says runs')

  // Some traffic for the counters and sparklines (a few seconds of connections).
  for (let i = 0; i < 12; i++) {
    await Promise.all([whoAnswers(lb.ports[0]!, '127.0.0.2'), whoAnswers(lb.ports[0]!, '127.0.0.3')])
    await sleep(150)
  }
  await page.waitForFunction((sel) => Number((globalThis as unknown as { document: Dom }).document.querySelector(sel)?.textContent) >= 12, `${row(a)} td:nth-child(5)`, { timeout: 5000 })
  t.ok(Number(await page.locator(`${row(a)} td:nth-child(5)`).textContent()) >= 12, 'total connections shown')
  await page.waitForFunction((sel) => ((globalThis as unknown as { document: Dom }).document.querySelector(sel)?.getAttribute('points') ?? '').split(' ').some((p) => Number(p.split(',')[1]) < 19), `${row(a)} polyline`, { timeout: 5000 })
  t.pass('the sparkline drew connections/s')

  // Kill ok-b: the page shows it down within one check interval.
  const killedAt = Date.now()
  await b.stop()
  await page.locator(`${row(b)} .state`).filter({ hasText: 'down' }).waitFor({ timeout: CHECK_INTERVAL_MS + SLACK_MS })
  const tookMs = Date.now() - killedAt
  t.ok(tookMs <= CHECK_INTERVAL_MS + SLACK_MS, `down on the page ${tookMs} ms after the kill (interval ${CHECK_INTERVAL_MS} ms)`)
  t.match(await page.locator(`${row(b)} td.why`).textContent(), /ECONNREFUSED/)
  t.equal(await page.locator(`${row(b)} .strip i.fail`).count() >= 1, true, 'the failed check is in the strip')

  // Drain ok-a with its button: the page and the API agree.
  await page.locator(`${row(a)} button[data-action="drain"]`).click()
  await page.locator(`${row(a)} .state`).filter({ hasText: 'drain' }).waitFor({ timeout: 5000 })
  t.match(await page.locator('#toast').textContent(), `shop ${a.address}: up → drain`)
  t.ok(await page.locator(`${row(a)} button[data-action="enable"]`).isVisible(), 'enable is offered on a drained backend')
  t.notOk(await page.locator(`${row(a)} button[data-action="drain"]`).isVisible())
  const status = JSON.parse((await request(adminPort, '/status', { token: 's3cret' })).body)
  t.equal(status.services[0].backends[0].state, 'drain', 'the drain went through the admin API')

  const screenshot = path.join(dir, 'status-page.png')
  await page.screenshot({ path: screenshot, fullPage: true })
  t.ok(statSync(screenshot).size > 10_000, `screenshot saved (${screenshot})`)
  // `L4LB_PAGE_SCREENSHOT=path npm test` keeps a copy (the README's picture is made this way).
  if (process.env.L4LB_PAGE_SCREENSHOT) copyFileSync(screenshot, process.env.L4LB_PAGE_SCREENSHOT)
  t.same(problems, [], 'no script error on the page')
})

t.test('without a token the page shows state but offers no buttons', { skip }, async (t) => {
  const a = await new EchoBackend('a').start()
  t.teardown(() => a.stop())
  const { lb, adminPort } = await spawnWithAdmin(['-l', '127.0.0.1:0', '-b', a.address, '--name', 'open', '--check', 'none'])
  t.teardown(() => lb.stop())
  const page = await (await browser()).newPage()
  t.teardown(() => page.close())
  await page.goto(`http://127.0.0.1:${adminPort}/`)
  await page.locator(`tr[data-backend="${a.address}"] .state`).filter({ hasText: 'up' }).waitFor({ timeout: 5000 })
  t.equal(await page.locator('button[data-action]').count(), 0, 'no write buttons')
  t.notOk(await page.locator('#login').isVisible(), 'no token asked')
})
