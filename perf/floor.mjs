#!/usr/bin/env node
// The floor: the least any node:net TCP proxy does per connection (accept, connect round-robin,
// pipe both ways), with none of l4lb's features. The harness races it as target `node-floor`
// (perf/run --targets haproxy,node-floor,l4lb) to show how much of the gap to HAProxy is Node's
// own socket layer rather than l4lb. Keep it this small and plain; it is evidence, not a product.
//   node perf/floor.mjs -l 127.0.0.1:PORT -b 127.0.0.1:PORT [-b 127.0.0.1:PORT ...]
// With --protocol udp it is the least a node:dgram session proxy does (see udpFloor below):
//   node perf/floor.mjs --protocol udp -l 127.0.0.1:PORT -b 127.0.0.1:PORT [-b ...]
import net from 'node:net';
import dgram from 'node:dgram';

const hostPort = (s) => ({ host: s.slice(0, s.lastIndexOf(':')), port: Number(s.slice(s.lastIndexOf(':') + 1)) });
const argv = process.argv.slice(2);
const listen = argv[argv.indexOf('-l') + 1];
const backends = argv.flatMap((a, i) => (a === '-b' ? [hostPort(argv[i + 1])] : []));
const protocol = argv.includes('--protocol') ? argv[argv.indexOf('--protocol') + 1] : 'tcp';
if (!argv.includes('-l') || !listen || backends.length === 0 || (protocol !== 'tcp' && protocol !== 'udp')) {
  console.error('usage: node perf/floor.mjs [--protocol tcp|udp] -l HOST:PORT -b HOST:PORT [-b HOST:PORT ...]');
  process.exit(2);
}

let next = 0;
if (protocol === 'udp') udpFloor();
else
  net
    .createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (client) => {
      const up = net.connect({ ...backends[next++ % backends.length], allowHalfOpen: true, noDelay: true });
      client.on('error', () => up.destroy());
      up.on('error', () => client.destroy());
      up.on('connect', () => {
        client.pipe(up);
        up.pipe(client);
      });
    })
    .listen(hostPort(listen));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));

// UDP: one listener; a session per client address:port, each with its own dgram socket
// connect()ed to a backend picked round-robin when the session is made; datagrams that arrive
// before that connect completes wait in a queue; replies go back from the listener. No idle
// timeout, no session limit, no buffer sizing, no health: sessions live until the process ends.
// It is evidence, not a product.
function udpFloor() {
  const unbracket = (h) => h.replace(/^\[(.*)\]$/, '$1');
  const family = (h) => (net.isIPv6(unbracket(h)) ? 'udp6' : 'udp4');
  const l = hostPort(listen);
  const listener = dgram.createSocket(family(l.host));
  const sessions = new Map();
  listener.on('message', (msg, rinfo) => {
    const key = `${rinfo.address}:${rinfo.port}`;
    let s = sessions.get(key);
    if (!s) {
      const b = backends[next++ % backends.length];
      const up = dgram.createSocket(family(b.host));
      s = { up, ready: false, q: [] };
      sessions.set(key, s);
      const session = s;
      up.on('error', () => {}); // e.g. ECONNREFUSED from a backend that is not there: keep going
      up.on('message', (m) => listener.send(m, rinfo.port, rinfo.address));
      up.connect(b.port, unbracket(b.host), () => {
        session.ready = true;
        for (const m of session.q) up.send(m);
        session.q = [];
      });
    }
    if (s.ready) s.up.send(msg);
    else s.q.push(msg);
  });
  listener.bind(l.port, unbracket(l.host));
}
