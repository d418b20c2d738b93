import t from 'tap'
import net, { type AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ERROR_CODES, L4lbError, type ErrorCode } from '../lib/errors.js'
import { parseHostPort } from '../lib/address/index.js'
import { algorithms } from '../lib/balance/index.js'
import { configFromFlags, validateConfig, yamlKeyName } from '../lib/config/index.js'
import { loadConfigFile } from '../lib/config/file.js'
import { encodeV1, parseProxyHeader, ProxyHeaderParser } from '../lib/proxy-protocol/index.js'
import { startInspector } from '../lib/proxy-protocol/inspect.js'
import { createResolver, resolveOne } from '../lib/runtime/resolve.js'
import { buildProgram } from '../lib/cli/index.js'
import { statusCommand } from '../lib/cli/admin-client.js'

/** A loopback port nothing listens on (bound, read, released). */
async function closedPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

// One real input per code (undici's habit): the failure a user or a caller can actually cause,
// with the class, the code and the one line it prints.
const scenarios: Record<ErrorCode, { name: string; message: RegExp; run: () => unknown }> = {
  L4LB_ERR_CONFIG: {
    name: 'ConfigErrors',
    message: /^--backend "db1:99999": port must be 1-65535$/,
    run: () => configFromFlags({ listen: [':5432'], backend: ['db1:99999'] }),
  },
  L4LB_ERR_CONFIG_FILE: {
    name: 'ConfigFileError',
    message: /l4lb\.yaml:2: services\[0\]\.conectTimeout: unknown key \(did you mean "connectTimeout"\?\)/,
    run: () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'l4lb-errors-'))
      try {
        writeFileSync(path.join(dir, 'l4lb.yaml'), 'services:\n  - conectTimeout: 5s\n    listen: ":5432"\n    backends: [db1:5432]\n')
        return loadConfigFile(path.join(dir, 'l4lb.yaml'))
      } finally {
        rmSync(dir, { recursive: true })
      }
    },
  },
  L4LB_ERR_ADDRESS: { name: 'AddressError', message: /^"db1": expected host:port$/, run: () => parseHostPort('db1') },
  L4LB_ERR_LISTEN: {
    name: 'ListenError',
    message: /^cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    run: async () => {
      const taken = net.createServer()
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
      try {
        const inspector = await startInspector({ host: '127.0.0.1', port: (taken.address() as AddressInfo).port, out: process.stdout })
        await inspector.close()
      } finally {
        await new Promise((resolve) => taken.close(resolve))
      }
    },
  },
  L4LB_ERR_PROXY_HEADER: {
    name: 'ProxyHeaderError',
    message: /^PROXY header not-proxy: first byte 0x47/,
    run: () => parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')),
  },
  L4LB_ERR_RESOLVE: {
    name: 'ResolveError',
    message: /^cannot resolve "db\.example\.com": /,
    run: async () => {
      // The only DNS server is a loopback port nothing answers on: refused, never off the box.
      // (At start an unresolvable backend is marked down with this error as its reason.)
      const config = validateConfig({ services: [{ listen: ':5432', backends: ['db.example.com:5432'] }], resolvers: [`127.0.0.1:${await closedPort()}`] }, yamlKeyName)
      return resolveOne(createResolver(config.resolvers), config.services[0]!.backends[0]!.host)
    },
  },
  L4LB_ERR_BALANCE: {
    name: 'BalanceError',
    message: /^maglev: backend a:1 is listed twice$/,
    run: () => algorithms.maglev.createPicker([{ name: 'a:1', weight: 1, slot: 0 }, { name: 'a:1', weight: 1, slot: 1 }], new Int32Array(2)),
  },
  L4LB_ERR_STATE: {
    name: 'StateError',
    message: /after the header was complete/,
    run: () => {
      const parser = new ProxyHeaderParser()
      const header = encodeV1({ address: '192.0.2.1', port: 1 }, { address: '192.0.2.2', port: 2 }, 4)
      parser.push(header)
      parser.push(header)
    },
  },
  L4LB_ERR_USAGE: {
    name: 'ExitError',
    message: /^--listen: at least one listen address is required/,
    run: () => buildProgram().parseAsync(['node', 'l4lb', '-b', 'db1:5432']),
  },
  L4LB_ERR_ADMIN_REQUEST: {
    name: 'ExitError',
    message: /^cannot reach the admin endpoint at 127\.0\.0\.1:\d+: ECONNREFUSED$/,
    run: async () => statusCommand({ admin: `127.0.0.1:${await closedPort()}` }),
  },
}

t.test('every error code has a scenario, and every scenario raises its code', async (t) => {
  t.same(Object.keys(scenarios).sort(), [...ERROR_CODES].sort(), 'one scenario per code')
  for (const [code, { name, message, run }] of Object.entries(scenarios)) {
    let caught: unknown
    try {
      await run()
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof L4lbError, `${code}: an L4lbError was thrown`)
    const err = caught as L4lbError
    t.equal(err.code, code, `${code}: code`)
    t.equal(err.name, name, `${code}: class`)
    t.match(err.message, message, `${code}: message`)
    t.equal(err.message.split('\n').length, 1, `${code}: one line`)
    t.same(err.fields(), { code, err: err.message }, `${code}: the same facts for pino`)
  }
})
