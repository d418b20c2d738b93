// Load generators and the parsers of what they print. Every metric is returned as a plain
// number with its unit in the name (rps, p99Ms, gbps) so the report never guesses units.

/** wrk prints latencies as 812.00us / 1.23ms / 2.00s. */
export function toMs(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return { us: v / 1000, ms: v, s: v * 1000, m: v * 60_000 }[m[2]];
}

export function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
  const requests = num(/(\d+) requests in/);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: pct(50),
    p99Ms: pct(99),
    requests,
    errors: socketErrors + (Number.isNaN(non2xx) ? 0 : non2xx),
    errorDetail: sock ? sock[0] + (Number.isNaN(non2xx) ? '' : `, non-2xx ${non2xx}`) : '',
  };
}

export async function runWrk(procs, { port, durationS, connections, headers = [], cpus }) {
  const args = ['-t1', `-c${connections}`, `-d${durationS}s`, '--latency', '--timeout', '5s'];
  for (const h of headers) args.push('-H', h);
  args.push(`http://127.0.0.1:${port}/`);
  const r = await procs.run('wrk', 'wrk', args, { cpus, timeoutMs: (durationS + 30) * 1000 });
  const parsed = parseWrk(r.stdout);
  if (r.code !== 0 || Number.isNaN(parsed.rps)) {
    return { failed: `wrk exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  }
  return parsed;
}

export function parseIperf(json) {
  const j = JSON.parse(json);
  if (j.error) return { failed: `iperf3: ${j.error}` };
  const recv = j.end?.sum_received;
  const sent = j.end?.sum_sent;
  if (!recv) return { failed: 'iperf3: no end.sum_received in JSON' };
  return { gbps: recv.bits_per_second / 1e9, retransmits: sent?.retransmits ?? 0, errors: 0 };
}

/** One single-stream iperf3 test; reverse = server sends (iperf3 -R). Retries once if busy. */
export async function runIperf(procs, { port, durationS, reverse, cpus }) {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(durationS), '-J', '-P', '1', '--connect-timeout', '3000'];
  if (reverse) args.push('-R');
  let last;
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await procs.run('iperf3', 'iperf3', args, { cpus, timeoutMs: (durationS + 30) * 1000 });
    try {
      last = parseIperf(r.stdout);
    } catch {
      last = { failed: `iperf3 exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
    }
    if (!last.failed || !/busy/i.test(last.failed)) return last;
    await new Promise((res) => setTimeout(res, 1500));
  }
  return last;
}

// ---- UDP (sockperf) -----------------------------------------------------------------------

/** sockperf ping-pong: one outstanding datagram at a time; latency percentiles in usec. */
export function parseSockperfPingPong(out) {
  const pct = (label) => {
    const m = new RegExp(`percentile ${label}\\s*=\\s*([\\d.]+)`).exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const avg = /avg-latency=([\d.]+)/.exec(out) ?? /avg-rtt=([\d.]+)/.exec(out);
  const valid = /\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)/.exec(out);
  const runtime = valid ? Number(valid[1]) : NaN;
  return {
    avgUs: avg ? Number(avg[1]) : NaN,
    p50Us: pct('50.000'),
    p99Us: pct('99.000'),
    rtPerSec: valid ? Number(valid[3]) / runtime : NaN,
    sent: valid ? Number(valid[2]) : NaN,
    received: valid ? Number(valid[3]) : NaN,
  };
}

/** sockperf throughput: one-way send rate, as the client saw it. */
export function parseSockperfThroughput(out) {
  const total = /Total of (\d+) messages sent in ([\d.]+) sec/.exec(out);
  const mps = /Summary: Message Rate is (\d+) \[msg\/sec\]/.exec(out);
  const bw = /Summary: BandWidth is ([\d.]+) MBps \(([\d.]+) Mbps\)/.exec(out);
  return {
    sent: total ? Number(total[1]) : NaN,
    seconds: total ? Number(total[2]) : NaN,
    msgPerSec: mps ? Number(mps[1]) : NaN,
    mbps: bw ? Number(bw[2]) : NaN,
  };
}

export async function runSockperf(procs, mode, { port, durationS, msgSize, mps, cpus }) {
  const args = [mode, '-i', '127.0.0.1', '-p', String(port), '-t', String(durationS), '-m', String(msgSize)];
  if (mps) args.push(`--mps=${mps}`);
  if (mode === 'ping-pong') args.push('--full-rtt');
  const r = await procs.run(`sockperf-${mode}`, 'sockperf', args, { cpus, timeoutMs: (durationS + 30) * 1000 });
  const out = r.stdout + r.stderr;
  const parsed = mode === 'ping-pong' ? parseSockperfPingPong(out) : parseSockperfThroughput(out);
  const key = mode === 'ping-pong' ? 'rtPerSec' : 'msgPerSec';
  if (r.code !== 0 || Number.isNaN(parsed[key])) {
    return { failed: `sockperf ${mode} exit ${r.code}: ${out.trim().split('\n').slice(-3).join(' | ')}` };
  }
  return parsed;
}

/** Kernel-wide UDP counters (Udp: line of /proc/net/snmp): RcvbufErrors counts datagrams dropped for a full receive buffer. */
export async function udpCounters() {
  const { readFileSync } = await import('node:fs');
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0].split(/\s+/).slice(1);
  const vals = lines[1].split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, vals[i]]));
}
