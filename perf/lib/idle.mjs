// The idle-connection workload (issue 12 item 5, issue 14): open N proxied connections, each
// makes one HTTP request and then stays open doing nothing, measure the proxy's RSS per idle
// connection, close them all and watch RSS go back (or not) toward its warm baseline.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Client source addresses: 127.0.N.1 for N from 10. Loopback clients binding port 0 while a
 * listener uses SO_REUSEPORT can get the same port twice; distinct source addresses also keep
 * each address's ephemeral ports far from running out.
 */
export function sourceAddress(i, count = 20) {
  return `127.0.${10 + (i % count)}.1`;
}

/** One connection: connect from its own source address, send one GET, wait for the body. */
function openOne(port, i, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: sourceAddress(i) });
    let got = '';
    const timer = setTimeout(() => fail(new Error(`connection ${i}: no response in ${timeoutMs} ms`)), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.setEncoding('latin1');
    socket.on('error', fail);
    socket.once('connect', () => socket.write('GET / HTTP/1.1\r\nHost: perf\r\n\r\n'));
    socket.on('data', function onData(d) {
      got += d;
      if (!got.endsWith(body)) return;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', fail);
      socket.on('error', () => {}); // a proxy closing it later is the proxy's business, counted by the caller
      resolve(socket);
    });
  });
}

/**
 * Opens n keep-alive connections through 127.0.0.1:port, `concurrency` at a time, each after
 * one complete request/response. Rejects on the first failure (after closing what it opened).
 */
export async function openIdle(port, n, { body, concurrency = 200, timeoutMs = 30_000 } = {}) {
  const sockets = [];
  try {
    for (let i = 0; i < n; i += concurrency) {
      const batch = [];
      for (let k = i; k < Math.min(n, i + concurrency); k++) batch.push(openOne(port, k, body, timeoutMs));
      const settled = await Promise.allSettled(batch);
      for (const r of settled) if (r.status === 'fulfilled') sockets.push(r.value);
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  } catch (e) {
    closeAll(sockets);
    throw e;
  }
  return sockets;
}

/** How many of the sockets the proxy (or its backend) has closed meanwhile. */
export function closedCount(sockets) {
  return sockets.filter((s) => s.destroyed || s.readableEnded).length;
}

export function closeAll(sockets) {
  for (const s of sockets) s.destroy();
}

/** KB of RSS per connection between two VmRSS readings in kB. */
export function perConnectionKb(baseKb, atKb, n) {
  return (atKb - baseKb) / n;
}

/** Samples fn() every stepMs for totalMs (at least once), returning every sample. */
export async function sampleFor(totalMs, stepMs, fn) {
  const out = [];
  const end = Date.now() + totalMs;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(stepMs, left));
    out.push(fn());
  }
  if (out.length === 0) out.push(fn());
  return out;
}
