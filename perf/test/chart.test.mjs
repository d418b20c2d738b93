// The SVG ratio chart (perf/lib/chart.mjs) and the idle-workload helpers, without any tool.
// Run with: node --test perf/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chartData, renderChart, escapeXml } from '../lib/chart.mjs';
import { sourceAddress, perConnectionKb } from '../lib/idle.mjs';
import { firstLogLine, l4lbArgs } from '../lib/targets.mjs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const columns = [
  { id: 'haproxy', label: 'HAProxy nbthread 1', short: 'HAProxy' },
  { id: 'nginx', label: 'nginx stream', short: 'nginx' },
  { id: 'l4lb', label: 'l4lb', short: 'l4lb' },
];
const rows = [
  { id: 'keepalive.main', label: 'keep-alive · requests/s', better: 'higher', values: { haproxy: [100, 120, 110], nginx: [90], l4lb: [55, 50, 60] } },
  { id: 'close.p99', label: 'close · p99 <latency> & "tail"', better: 'lower', values: { haproxy: [2], nginx: [3], l4lb: [12] } },
  { id: 'keepalive.cpu', label: 'proxy CPU', better: null, values: { haproxy: [50], l4lb: [90] } },
  { id: 'bulk.main', label: 'bulk', better: 'higher', values: { haproxy: [NaN], l4lb: [5] } },
];

test('chart data: each target over the reference (medians); rows without a direction or a reference are left out', () => {
  const groups = chartData(rows, columns, 'haproxy');
  assert.deepEqual(groups.map((g) => g.label), ['keep-alive · requests/s', 'close · p99 <latency> & "tail"']);
  assert.deepEqual(groups[0].bars.map((b) => [b.id, b.ratio.toFixed(3)]), [['nginx', '0.818'], ['l4lb', '0.500']]);
  assert.deepEqual(groups[1].bars.map((b) => [b.id, b.ratio]), [['nginx', 1.5], ['l4lb', 6]]);
  assert.equal(groups[1].better, 'lower');
});

test('chart SVG: one bar per target per row, labels escaped, bars past the scale clipped and marked, a reference line', () => {
  const svg = renderChart(rows, columns, { reference: 'haproxy', title: 'tcp <run> & co' });
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  const bars = [...svg.matchAll(/<rect x="(\d+)" y="\d+" width="([\d.]+)" height="12" fill="#[0-9a-f]{6}"><title>([^<]*)<\/title><\/rect>/g)];
  assert.equal(bars.length, 4, 'two rows × two targets');
  assert.deepEqual(bars.map((b) => b[3]), ['nginx: 0.82×', 'l4lb: 0.50×', 'nginx: 1.50×', 'l4lb: 6.00×']);
  // Linear scale: nginx's 1.50× bar is three times l4lb's 0.50× one.
  const width = (i) => Number(bars[i][2]);
  assert.ok(Math.abs(width(2) / width(1) - 3) < 0.01, `${width(2)} vs ${width(1)}`);
  // 6× is past the 4× cap: drawn to the edge, marked with ▶ and its value.
  assert.ok(Math.abs(width(3) / width(1) - 8) < 0.01);
  assert.match(svg, />▶ 6\.00×</);
  assert.ok(svg.includes('close · p99 &lt;latency&gt; &amp; &quot;tail&quot; (lower is better)'));
  // A label too long for the margin is cut with an ellipsis; the whole one is its tooltip.
  const long = renderChart([{ ...rows[0], label: 'x'.repeat(80) }], columns, { reference: 'haproxy' });
  assert.ok(long.includes(`<title>${'x'.repeat(80)} (higher is better)</title>${'x'.repeat(51)}…</text>`));
  assert.ok(svg.includes('tcp &lt;run&gt; &amp; co'));
  assert.ok(!/<(?!\/?(svg|style|rect|text|title|line)\b)/.test(svg), 'only the elements the writer emits');
  assert.match(svg, /class="ref"/);
  // Every opened text/title element is closed.
  for (const el of ['text', 'title']) assert.equal((svg.match(new RegExp(`<${el}[ >]`, 'g')) ?? []).length, (svg.match(new RegExp(`</${el}>`, 'g')) ?? []).length, el);
});

test('escapeXml', () => {
  assert.equal(escapeXml(`a<b>&"c'`), 'a&lt;b&gt;&amp;&quot;c&#39;');
});

test('idle workload: distinct 127.x source addresses in turn; KB per connection from two kB readings', () => {
  assert.equal(sourceAddress(0), '127.0.10.1');
  assert.equal(sourceAddress(19), '127.0.29.1');
  assert.equal(sourceAddress(20), '127.0.10.1');
  assert.equal(perConnectionKb(60_000, 120_000, 9000).toFixed(2), '6.67');
});

test('l4lb-native: argv carries --data-plane and --threads; the refusal line is what a skip shows', () => {
  assert.deepEqual(l4lbArgs('/x/bin/l4lb', { listen: 1, backends: [2], dataPlane: 'native', threads: 2 }).slice(0, 5), ['/x/bin/l4lb', '--data-plane', 'native', '--threads', '2']);
  const msg = "l4lb-native-http exited during start-up; log /tmp/x/l4lb-native-http.log:\nl4lb: unknown option '--data-plane'";
  assert.equal(firstLogLine(msg), "l4lb: unknown option '--data-plane'");
  assert.equal(firstLogLine('only line'), 'only line');
});

test('perf/run refuses bad idle and thread options with one line and exit 2, before starting anything', () => {
  const bench = fileURLToPath(new URL('../bench.mjs', import.meta.url));
  for (const [args, re] of [
    [['idle', '--idle-conns', '20000'], /--idle-conns must be a whole number from 1 to 9500/],
    [['idle', '--idle-wait', 'soon'], /--idle-wait: cannot read "soon"/],
    [['--threads', '0'], /--threads must be a whole number from 1 to 64/],
  ]) {
    const r = spawnSync(process.execPath, [bench, ...args], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, re);
  }
});
