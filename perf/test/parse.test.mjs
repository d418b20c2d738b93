// Parsers and helpers of the harness against outputs captured from the real tools (wrk 4.1.0,
// iperf 3.12, sockperf 3.7). Run with: node --test perf/test/*.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseWrk, toMs, parseIperf, parseSockperfPingPong, parseSockperfThroughput } from '../lib/clients.mjs';
import { median, spreadPct, renderTable, renderTargets, RATIO_COLUMNS } from '../lib/report.mjs';
import { orderFor } from '../lib/order.mjs';
import { FLOOR, floorArgs } from '../lib/targets.mjs';
import { spawnSync } from 'node:child_process';

const WRK = `Running 1s test @ http://127.0.0.1:21979/bad
  1 threads and 5 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    14.67ms   31.89ms 173.21ms   90.91%
    Req/Sec     1.20k   732.93     2.17k    60.00%
  Latency Distribution
     50%    2.67ms
     75%    7.82ms
     90%   35.85ms
     99%  159.93ms
  1211 requests in 1.01s, 136.00KB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1211
Requests/sec:   1203.87
Transfer/sec:    135.20KB
`;

test('wrk: rate, percentiles in ms, socket errors and non-2xx responses count as errors', () => {
  const r = parseWrk(WRK);
  assert.equal(r.rps, 1203.87);
  assert.equal(r.p50Ms, 2.67);
  assert.equal(r.p99Ms, 159.93);
  assert.equal(r.requests, 1211);
  assert.equal(r.errors, 5 + 1211);
});

test('wrk latency units', () => {
  assert.equal(toMs('812.00us'), 0.812);
  assert.equal(toMs('1.50ms'), 1.5);
  assert.equal(toMs('2.00s'), 2000);
  assert.ok(Number.isNaN(toMs('n/a')));
});

test('iperf3: receiver bits/s as Gbit/s; an error field is a failure', () => {
  const ok = parseIperf('{"end":{"sum_sent":{"bits_per_second":9473708078.9,"retransmits":3},"sum_received":{"bits_per_second":9472818143.1}}}');
  assert.equal(ok.gbps.toFixed(3), '9.473');
  assert.equal(ok.retransmits, 3);
  assert.match(parseIperf('{"start":{},"error":"the server is busy running a test. try again later"}').failed, /busy/);
});

test('sockperf ping-pong (--full-rtt, with the colour codes sockperf prints)', () => {
  const out = `sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=18981; ReceivedMessages=18981
sockperf: \u001b[2;35m====> avg-rtt=28.952 (std-dev=76.317)\u001b[0m
sockperf: ---> percentile 99.000 =  156.237
sockperf: ---> percentile 50.000 =   22.923`;
  const r = parseSockperfPingPong(out);
  assert.equal(r.avgUs, 28.952);
  assert.equal(r.p99Us, 156.237);
  assert.equal(r.p50Us, 22.923);
  assert.equal(Math.round(r.rtPerSec), Math.round(18981 / 0.55));
});

test('sockperf throughput', () => {
  const out = `sockperf: Total of 73530 messages sent in 1.001 sec
sockperf: Summary: Message Rate is 73462 [msg/sec]
sockperf: Summary: BandWidth is 103.127 MBps (825.013 Mbps)`;
  assert.deepEqual(parseSockperfThroughput(out), { sent: 73530, seconds: 1.001, msgPerSec: 73462, mbps: 825.013 });
});

test('median and spread ignore failed (NaN) samples', () => {
  assert.equal(median([3, NaN, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([NaN])));
  assert.equal(spreadPct([90, 100, 110]), 10);
});

test('target order alternates: every other repetition reversed, and rotated every two', () => {
  const t = ['a', 'b', 'c', 'd'];
  assert.deepEqual(orderFor(t, 0), ['a', 'b', 'c', 'd']);
  assert.deepEqual(orderFor(t, 1), ['d', 'c', 'b', 'a']);
  assert.deepEqual(orderFor(t, 2), ['b', 'c', 'd', 'a']);
  assert.deepEqual(orderFor(t, 3), ['a', 'd', 'c', 'b']);
});

test('targets: met when the ratio of medians reaches the bar; paired ratios per repetition', () => {
  const rows = [
    { id: 'keepalive.main', values: { l4lb: [95, 80, 90], haproxy: [100, 100, 100] } },
    { id: 'close.main', values: { l4lb: [60, NaN], haproxy: [100, 100] } },
  ];
  const { text, verdicts } = renderTargets(rows, [
    { row: 'keepalive.main', label: 'keep-alive', min: 0.9 },
    { row: 'close.main', label: 'close', min: 0.7 },
    { row: 'bulk-up.main', label: 'bulk', min: 0.9 },
  ]);
  assert.deepEqual(verdicts.map((v) => v.status), ['**met**', '**not met**', 'not measured']);
  assert.match(text, /0\.95 \/ 0\.80 \/ 0\.90/);
  assert.match(text, /0\.60 \/ –/);
});

test('ratio columns: l4lb against each present id; node-floor columns only when node-floor ran', () => {
  const tcp = RATIO_COLUMNS.tcp;
  const col = { haproxy: 'HAProxy', nginx: 'nginx', direct: 'direct', l4lb: 'l4lb', 'node-floor': 'node-floor' };
  const columns = (ids) => ids.map((id) => ({ id, label: id, short: col[id] }));
  const rows = [{ label: 'conn', unit: 'conn/s', better: 'higher', kind: 'int', values: { haproxy: [1000], nginx: [800], l4lb: [500], 'node-floor': [520] } }];
  const head = (ids) => renderTable(rows, columns(ids), tcp).split('\n')[0];
  const last = (ids) => renderTable(rows, columns(ids), tcp).split('\n')[2];
  // Without node-floor: the same columns as before it existed.
  assert.equal(head(['haproxy', 'nginx', 'l4lb']), '| workload · metric | haproxy | nginx | l4lb | l4lb/HAProxy | l4lb/nginx |');
  assert.equal(head(['haproxy', 'nginx']), '| workload · metric | haproxy | nginx |');
  assert.match(head(['haproxy', 'node-floor', 'l4lb']), /\| l4lb\/HAProxy \| l4lb\/node-floor \| node-floor\/HAProxy \|$/);
  assert.match(last(['haproxy', 'node-floor', 'l4lb']), /\| 0\.50× \| 0\.96× \| 0\.52× \|$/);
  // node-floor/HAProxy needs no l4lb column.
  assert.match(head(['haproxy', 'node-floor']), /\| node-floor \| node-floor\/HAProxy \|$/);
  assert.match(last(['haproxy', 'node-floor']), /\| 0\.52× \|$/);
});

test('udp ratio columns: l4lb/nginx and l4lb/direct as before; node-floor columns only when node-floor ran', () => {
  const col = { nginx: 'nginx', direct: 'direct', l4lb: 'l4lb', 'node-floor': 'node-floor' };
  const columns = (ids) => ids.map((id) => ({ id, label: id, short: col[id] }));
  const rows = [{ label: 'rt', unit: '1/s', better: 'higher', kind: 'int', values: { direct: [4000], nginx: [2000], l4lb: [1500], 'node-floor': [1200] } }];
  const lines = (ids) => renderTable(rows, columns(ids), RATIO_COLUMNS.udp).split('\n');
  // Without node-floor: the table a udp run printed before node-floor existed for it.
  assert.equal(lines(['direct', 'nginx', 'l4lb'])[0], '| workload · metric | direct | nginx | l4lb | l4lb/nginx | l4lb/direct |');
  assert.match(lines(['direct', 'nginx', 'l4lb'])[2], /\| 0\.75× \| 0\.38× \|$/);
  assert.equal(lines(['direct', 'nginx', 'node-floor', 'l4lb'])[0], '| workload · metric | direct | nginx | node-floor | l4lb | l4lb/nginx | l4lb/direct | l4lb/node-floor | node-floor/nginx |');
  assert.match(lines(['direct', 'nginx', 'node-floor', 'l4lb'])[2], /\| 0\.75× \| 0\.38× \| 1\.25× \| 0\.60× \|$/);
  // node-floor/nginx needs no l4lb column (perf/run udp --targets nginx,node-floor).
  assert.equal(lines(['nginx', 'node-floor'])[0], '| workload · metric | nginx | node-floor | node-floor/nginx |');
  assert.match(lines(['nginx', 'node-floor'])[2], /\| 0\.60× \|$/);
  // No HAProxy pair in udp.
  assert.doesNotMatch(lines(['nginx', 'node-floor', 'l4lb'])[0], /HAProxy|haproxy/);
});

test('node-floor: argv for the harness; without a backend it prints usage and exits 2', () => {
  assert.deepEqual(floorArgs({ listen: 2000, backends: [3000, 3001] }).slice(1), ['-l', '127.0.0.1:2000', '-b', '127.0.0.1:3000', '-b', '127.0.0.1:3001']);
  const r = spawnSync(process.execPath, [FLOOR, '-l', '127.0.0.1:2000'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /usage: node perf\/floor\.mjs/);
});

test('node-floor udp: argv carries --protocol udp; usage errors exit 2 before any socket opens', () => {
  assert.deepEqual(floorArgs({ listen: 2000, backends: [3000, 3001], protocol: 'udp' }).slice(1), ['--protocol', 'udp', '-l', '127.0.0.1:2000', '-b', '127.0.0.1:3000', '-b', '127.0.0.1:3001']);
  for (const args of [
    ['--protocol', 'udp', '-l', '127.0.0.1:2000'], // no backend
    ['--protocol', 'udp', '-b', '127.0.0.1:3000'], // no listener
    ['--protocol', 'sctp', '-l', '127.0.0.1:2000', '-b', '127.0.0.1:3000'], // unknown protocol
    ['-l', '127.0.0.1:2000', '-b', '127.0.0.1:3000', '--protocol'], // no protocol value
  ]) {
    const r = spawnSync(process.execPath, [FLOOR, ...args], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /usage: node perf\/floor\.mjs \[--protocol tcp\|udp\]/);
  }
});

test('l4lb runs with the Environment= lines of conf/l4lb.service (glibc malloc tunables)', async () => {
  const { parseUnitEnvironment, unitEnvironment } = await import('../lib/targets.mjs');
  assert.deepEqual(parseUnitEnvironment('[Service]\nEnvironment=A=1\n# Environment=B=2\nEnvironment=C=x:y=z\n'), { A: '1', C: 'x:y=z' });
  const env = unitEnvironment(new URL('../../bin/l4lb', import.meta.url).pathname);
  assert.match(env.GLIBC_TUNABLES ?? '', /glibc\.malloc\.trim_threshold=\d+/);
  assert.deepEqual(unitEnvironment('/nonexistent/bin/l4lb'), {});
});
