// l4lb in front of a real nginx whose stream server only speaks to PROXY-protocol peers and
// answers with the client address it learned from the header ($proxy_protocol_addr): proof that
// what we send is what a widely deployed receiver understands, v1 and v2, IPv4 and IPv6.
// Skips cleanly when nginx or its stream module is not installed.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { canUseIPv6, connect, freePort, readLine, spawnL4lb, spawnPeer, within } from '../helpers/index.js'
import { waitConnectable } from '../helpers/proxy.js'
import { PLANES, planeArgs, planeSkip } from '../helpers/planes.js'

const NGINX = '/usr/sbin/nginx'
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so'

if (!existsSync(NGINX)) {
  t.plan(0, `no nginx at ${NGINX}`)
} else if (!existsSync(STREAM_MODULE)) {
  t.plan(0, `no nginx stream module at ${STREAM_MODULE} (Debian: libnginx-mod-stream)`)
} else {
  const ipv6 = await canUseIPv6()
  const dir = mkdtempSync(join(tmpdir(), 'l4lb-nginx-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const port4 = await freePort()
  const port6 = ipv6 ? await freePort('::1') : 0
  const reply = 'return "$proxy_protocol_addr:$proxy_protocol_port\\n";'
  writeFileSync(
    join(dir, 'nginx.conf'),
    `load_module ${STREAM_MODULE};
worker_processes 1;
error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
events { worker_connections 256; }
stream {
  server { listen 127.0.0.1:${port4} proxy_protocol; ${reply} }
  ${ipv6 ? `server { listen [::1]:${port6} proxy_protocol; ${reply} }` : ''}
}
`,
  )
  const nginx = spawnPeer(t, NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'])
  try {
    await waitConnectable(port4)
  } catch (err) {
    const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''
    throw new Error(`nginx did not start: ${String(err)}\n${nginx.output()}\n${log}`)
  }

  for (const plane of PLANES) {
    for (const version of ['v1', 'v2'] as const) {
      t.test(`${plane} plane, ${version} over IPv4: nginx sees the client's real address`, { skip: planeSkip(plane) }, async (t) => {
        const lb = await spawnL4lb(['-l', '127.0.0.1:0', '--check', 'none', '-b', `127.0.0.1:${port4}`, '--proxy-protocol', version, ...planeArgs(plane)])
        t.teardown(() => lb.stop())
        for (const source of ['127.5.0.7', '127.5.3.9']) {
          const client = await within(5000, 'connect', connect(lb.ports[0]!, '127.0.0.1', source))
          const port = client.localPort
          t.equal(await readLine(client), `${source}:${port}`, `${version} ${source}`)
          client.destroy()
        }
      })

      t.test(`${plane} plane, ${version} over IPv6: nginx sees [::1] and the client's port`, { skip: planeSkip(plane) }, async (t) => {
        if (!ipv6) return t.plan(0, 'no IPv6 loopback here')
        const lb = await spawnL4lb(['-l', '[::1]:0', '--check', 'none', '-b', `[::1]:${port6}`, '--proxy-protocol', version, ...planeArgs(plane)])
        t.teardown(() => lb.stop())
        const client = await within(5000, 'connect', connect(lb.ports[0]!, '::1'))
        const port = client.localPort
        t.equal(await readLine(client), `::1:${port}`)
        client.destroy()
      })
    }
  }
}
