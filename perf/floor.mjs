#!/usr/bin/env node
// The floor: the least any node:net TCP proxy does per connection (accept, connect round-robin,
// pipe both ways), with none of l4lb's features. The harness races it as target `node-floor`
// (perf/run --targets haproxy,node-floor,l4lb) to show how much of the gap to HAProxy is Node's
// own socket layer rather than l4lb. Keep it this small and plain; it is evidence, not a product.
//   node perf/floor.mjs -l 127.0.0.1:PORT -b 127.0.0.1:PORT [-b 127.0.0.1:PORT ...]
import net from 'node:net';

const hostPort = (s) => ({ host: s.slice(0, s.lastIndexOf(':')), port: Number(s.slice(s.lastIndexOf(':') + 1)) });
const argv = process.argv.slice(2);
const listen = argv[argv.indexOf('-l') + 1];
const backends = argv.flatMap((a, i) => (a === '-b' ? [hostPort(argv[i + 1])] : []));
if (!argv.includes('-l') || !listen || backends.length === 0) {
  console.error('usage: node perf/floor.mjs -l HOST:PORT -b HOST:PORT [-b HOST:PORT ...]');
  process.exit(2);
}

let next = 0;
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
