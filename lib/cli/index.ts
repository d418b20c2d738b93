/**
 * The command line: flags → a Config (through lib/config, which names every bad value), then
 * the runtime. Bad input exits 2 with one line; a runtime failure (port in use) exits 1 with one
 * line; nothing the user typed ever produces a stack trace.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Command, CommanderError, Option } from 'commander'
import { applyFlagOverrides, configFromFlags, ConfigErrors, type Config, type FlagValues } from '../config/index.js'
import { ConfigFileError, loadConfigFile } from '../config/file.js'
import { AdminServer } from '../admin/index.js'
import { adminCommand, DEFAULT_CONFIG_FILE, statusCommand, type AdminOptions } from './admin-client.js'
import { L4lbError } from '../errors.js'
import { createLogger } from '../log/index.js'
import { Runtime } from '../runtime/index.js'
import { algorithmNames } from '../balance/index.js'
import { runDemo } from './demo.js'
import { sdNotify } from '../runtime/notify.js'
import { runProxyInspect } from './proxy-inspect.js'
import { helpConfiguration, mainFlagsHelp, unknownCommandLine } from './help.js'
import { installServiceCommand } from './install-service.js'

export const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version

export const EXIT_USAGE = 2
export const EXIT_RUNTIME = 1

/** Thrown inside actions for a clean exit with one line. */
export class ExitError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message)
  }
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

export const EXAMPLES = `
Examples:
  # PostgreSQL: clients stick to one server by source IP (Maglev), TCP checks every 2s
  l4lb -l :5432 -b db1:5432 -b db2:5432 -b db3:5432,backup

  # PostgreSQL primary only, as marked by Patroni's REST API on port 8008
  l4lb -l :5000 -b 10.0.0.1:5432,check-port=8008 -b 10.0.0.2:5432,check-port=8008 \\
       --check http --check-http-path /primary --on-down shutdown

  # Game servers: UDP, same client IP → same server, TCP query-port checks
  l4lb -l :27015 --protocol udp -b 10.0.0.11:27015 -b 10.0.0.12:27015 --check-port 27016

  # Stateless pool with weights
  l4lb -l 127.0.0.1:8080 -b app1:80,weight=3 -b app2:80 --balance least-conn
`

function addRunOptions(cmd: Command): Command {
  return cmd
    .option('-l, --listen <[host]:port>', 'address to listen on, repeatable (":5432" = every address)', collect)
    .option('-b, --backend <host:port[,weight=N][,backup][,check-port=N]>', 'backend server, repeatable', collect)
    .option('--protocol <tcp|udp|tcp,udp>', 'protocol to balance (default tcp)')
    .addOption(new Option('-a, --balance <algorithm>', 'balancing algorithm (default consistent = Maglev)').choices(algorithmNames))
    .option('--hash-key <src-ip|src-ip-port>', 'what hashing algorithms hash (default src-ip)')
    .option('--proxy-protocol <none|v1|v2>', 'send a PROXY protocol header to backends')
    .option('--accept-proxy <cidr,...>', 'accept PROXY headers from these source CIDRs, repeatable', collect)
    .option('--accept-proxy-strict', 'refuse connections from sources outside --accept-proxy (default: serve them as plain TCP)')
    .option('--accept-proxy-timeout <duration>', 'deadline for a complete accepted PROXY header (default 5s)')
    .option('--accept-proxy-max-length <bytes>', 'largest accepted PROXY v2 length field (default 4096)')
    .option('--proxy-v2-crc32c', 'add a CRC32C TLV to sent PROXY v2 headers')
    .option('--proxy-udp-first-only', 'udp: send the PROXY v2 header on a session\'s first datagram only (default: every datagram)')
    .option('--proxy-forward-tlvs', 'forward TLVs of an accepted PROXY v2 header in the sent one')
    .option('--check <tcp|send-expect|http|udp|none>', 'health check type (default tcp; udp sends --check-send, expects --check-expect)')
    .option('--check-interval <duration>', 'time between checks (default 2s)')
    .option('--check-timeout <duration>', 'check timeout (default 1s)')
    .option('--rise <n>', 'consecutive passing checks to mark a backend up (default 2)')
    .option('--fall <n>', 'consecutive failing checks to mark a backend down (default 3)')
    .option('--check-port <port>', 'probe this port instead of the service port')
    .option('--check-send <bytes>', 'send-expect: bytes to send (text with \\r\\n escapes, or 0xHEX)')
    .option('--check-expect <bytes>', 'send-expect: expected reply prefix, repeatable for alternatives', collect)
    .option('--check-http-path <path>', 'http check: path to GET (default /)')
    .option('--check-http-status <status>', 'http check: expected status, e.g. 200 or 2xx (default 2xx)')
    .option('--check-send-proxy', 'send a PROXY v2 LOCAL header on check connections')
    .option('--fast-interval <duration>', 'check interval while a state is changing')
    .option('--down-interval <duration>', 'check interval while a backend is down')
    .option('--flap-damping <n/window/hold>', 'a backend that changed state more than n times in window must pass for hold before it is up again, e.g. 4/60s/30s')
    .option('--on-down <keep|shutdown>', 'what happens to connections of a backend marked down (default keep)')
    .option('--connect-timeout <duration>', 'backend connect timeout (default 5s)')
    .option('--idle-timeout <duration>', 'close connections idle this long, 0 = never (default 1h)')
    .option('--retries <n>', 'other backends to try when a connect fails (default 2)')
    .option('--max-conns <n>', 'concurrent connections per service, 0 = unlimited (default 0)')
    .option('--drain-timeout <duration>', 'on SIGTERM, wait this long for connections (default 30s)')
    .option('--backlog <n>', 'listen backlog (default 4096)')
    .option('--reuse-port', 'set SO_REUSEPORT on listeners (Node >= 22.12)')
    .option('--udp-idle-timeout <duration>', 'udp: end a session idle this long (default 30s)')
    .option('--udp-responses <n>', 'udp: replies per client datagram before the session ends, 0 = unlimited (1 for DNS; default 0)')
    .option('--udp-max-sessions <n>', 'udp: sessions per service; new flows beyond it are dropped (default 100000)')
    .option('--udp-buffer <size>', 'udp: receive/send buffer of listening sockets, e.g. 4MiB (default 4MiB)')
    .option('--udp-keep-sessions', 'udp: keep sessions on a backend marked down until idle (default: move them)')
    .option('--name <name>', 'service name in logs and metrics (default "default")')
    .option('--resolve-interval <duration>', 're-resolve backend hostnames and srv: names this often, 0 = never (default 30s)')
    .option('--resolver <ip[:port]>', 'DNS server for backend names, repeatable (default: the system resolver)', collect)
    .option('-c, --config <file>', 'YAML config file (flags override it; see conf/)')
    .option('--admin <host:port|path>', 'admin HTTP endpoint (status, metrics, drain); off by default')
    .option('--admin-token-file <file>', 'require this bearer token on the admin endpoint')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent (default info)')
    .option('--log-format <json|pretty>', 'log format (default json)')
}

export function buildProgram(): Command {
  const program = new Command('l4lb')
  program
    .description('An L4 (TCP/UDP) load balancer: consistent hashing, health checks, PROXY protocol.')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`l4lb: ${str.replace(/^error: /, '').trim()}\n`),
    })
    .showSuggestionAfterError(true)
    // Before any subcommand is added: subcommands copy it, so every help fits 100 columns.
    .configureHelp(helpConfiguration())

  const run = addRunOptions(program.command('run', { isDefault: true }).description('run the load balancer (the default command)'))
    .addHelpText('after', EXAMPLES)
    .action(async (opts: FlagValues) => runCommand(opts))

  program
    .command('demo')
    .description('start three local echo backends and a balancer in front of them')
    .option('-p, --port <port>', 'port for the balancer (default: any free port)', '0')
    .addOption(new Option('-a, --balance <algorithm>', 'balancing algorithm').choices(algorithmNames).default('round-robin'))
    .action(async (opts: { port: string; balance: string }) => runDemo(opts))

  program
    .command('check')
    .description('validate a config file without starting; prints every error as FILE:LINE: key: message')
    .requiredOption('-c, --config <file>', 'YAML config file')
    .action((opts: { config: string }) => {
      const config = loadConfigFile(opts.config)
      process.stdout.write(`${opts.config}: ok (${config.services.length} service${config.services.length === 1 ? '' : 's'}: ${config.services.map((s) => s.name).join(', ')})\n`)
    })

  program
    .command('status')
    .description('show services and backends of a running l4lb (from its admin endpoint)')
    .option('--admin <host:port|path>', `admin endpoint (default: the admin of the config file, ${DEFAULT_CONFIG_FILE} if it exists)`)
    .option('--admin-token-file <file>', 'bearer token file (default: the config file\'s admin.tokenFile)')
    .option('-c, --config <file>', 'read the admin endpoint and token file from this config')
    .option('--json', 'print the raw JSON')
    .action(async (opts: AdminOptions & { json?: boolean }) => statusCommand(opts))

  for (const action of ['drain', 'maint', 'enable'] as const) {
    program
      .command(`${action} <service> <backend>`)
      .description(
        action === 'drain' ? 'stop sending new connections to a backend; existing ones finish'
          : action === 'maint' ? 'take a backend out of rotation and stop checking it'
            : 'put a drained or maint backend back under health control',
      )
      .option('--admin <host:port|path>', 'admin endpoint (default: as for status)')
      .option('--admin-token-file <file>', 'bearer token file')
      .option('-c, --config <file>', 'read the admin endpoint and token file from this config')
      .action(async (service: string, backend: string, opts: AdminOptions) => adminCommand(action, service, backend, opts))
  }

  program
    .command('proxy-inspect')
    .description('listen and print every PROXY header received (version, command, addresses, TLVs) and the bytes after it')
    .requiredOption('-l, --listen <[host]:port>', 'address to listen on (":9999" = every address, port 0 = any free port)')
    .option('--timeout <duration>', 'header deadline per connection (default 5s)')
    .action(async (opts: { listen: string; timeout?: string }) => runProxyInspect(opts))

  program
    .command('install-service')
    .description('install the systemd unit (ExecStart = this installed l4lb), /etc/l4lb/l4lb.yaml when absent, an admin token and bash completion')
    .option('--prefix <dir>', 'install prefix whose bin/l4lb the unit runs (default: the prefix npm installed this l4lb under)')
    .option('--root <dir>', 'write under this directory instead of / (staging, packaging, tests)')
    .action((opts: { prefix?: string; root?: string }) => installServiceCommand(opts))

  // Run is the default command, so its main flags belong on the first help page people see.
  program.addHelpText('after', () => mainFlagsHelp(run, program.createHelp()) + EXAMPLES)
  return program
}

function loadConfig(opts: FlagValues): Config {
  if (opts.config) {
    return loadConfigFile(opts.config, (raw) => {
      const problem = applyFlagOverrides(raw, opts)
      if (problem) throw new ExitError(EXIT_USAGE, problem)
    })
  }
  if (!opts.listen || opts.listen.length === 0) throw new ExitError(EXIT_USAGE, '--listen: at least one listen address is required (e.g. -l :5432)')
  return configFromFlags(opts)
}

async function runCommand(opts: FlagValues): Promise<void> {
  const config = loadConfig(opts)
  const tokenFile = config.admin?.tokenFile
  if (tokenFile !== undefined) {
    // Checked before anything listens: a missing token is a config mistake, not a crash later.
    try {
      readFileSync(tokenFile)
    } catch (err) {
      throw new ExitError(EXIT_USAGE, `admin token file ${JSON.stringify(tokenFile)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
    }
  }
  const { logger, flush } = createLogger(config.log)
  const runtime = await Runtime.start(config, logger)
  let admin: AdminServer | undefined
  if (config.admin) {
    try {
      admin = new AdminServer(config.admin, runtime, logger)
      await admin.listen()
    } catch (err) {
      await runtime.stop(0)
      throw err
    }
    logger.info({ admin: admin.address() }, 'admin endpoint listening')
  }
  const drainTimeoutMs = Math.max(...config.services.map((s) => s.drainTimeoutMs))
  installSignals(runtime, flush, drainTimeoutMs, () => admin?.close())
  installReload(runtime, opts)
  await sdNotify('READY=1', `serving ${config.services.length} service(s)`)
}

/**
 * SIGHUP: re-read and validate the file; an invalid file is logged and the running config is
 * kept unchanged. A valid one is applied in place (no fork, no second generation). Started from
 * flags there is no file to re-read: SIGHUP re-resolves backend names instead (Node's default
 * for SIGHUP is to exit, which killed such a process: issue 12).
 */
function installReload(runtime: Runtime, opts: FlagValues): void {
  let reloading = Promise.resolve()
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      await sdNotify('RELOADING=1')
      if (!opts.config) {
        const changed = await runtime.refreshAll()
        runtime.logger.info({ signal: 'SIGHUP', changed }, 'SIGHUP: started from flags, no config file to re-read; backend names re-resolved')
        await sdNotify('READY=1', `serving ${runtime.services.size} service(s)`)
        return
      }
      let next: Config
      try {
        next = loadConfig(opts)
      } catch (err) {
        const lines = err instanceof ConfigFileError ? err.problems.map((p) => `${err.file}:${p.line}: ${p.message}`) : [String((err as Error).message)]
        runtime.logger.error({ errors: lines }, 'reload rejected: config invalid, keeping the running config')
        await sdNotify('READY=1', 'reload rejected: config invalid')
        return
      }
      try {
        const result = await runtime.reload(next)
        runtime.logger.info(result, 'reloaded')
      } catch (err) {
        runtime.logger.error({ err: (err as Error).message }, 'reload failed part-way; services not yet updated keep the old config')
      }
      await sdNotify('READY=1', `serving ${runtime.services.size} service(s)`)
    })
  })
}

/** SIGTERM/SIGINT: drain gracefully; a second signal exits at once. */
export function installSignals(runtime: Runtime, flush: (timeoutMs?: number) => Promise<void>, drainTimeoutMs: number, beforeExit?: () => unknown): void {
  let stopping = false
  const exit = (code: number, flushMs?: number): void => {
    void flush(flushMs).then(() => process.exit(code))
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      runtime.logger.warn({ signal }, 'second signal: exiting now')
      exit(1, 100)
      return
    }
    stopping = true
    void sdNotify('STOPPING=1')
    runtime.logger.info({ signal, active: runtime.activeConnections, drainTimeoutMs }, 'stopping: draining connections')
    runtime.stop(drainTimeoutMs).then(
      async () => {
        await beforeExit?.()
        runtime.logger.info('stopped')
        exit(0)
      },
      (err: unknown) => {
        runtime.logger.error({ err }, 'error while stopping')
        exit(1)
      },
    )
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  // On purpose: Node's default for SIGUSR1 opens the inspector (a debugger port on a production
  // balancer) and for SIGUSR2 exits. USR1 logs a one-line summary; USR2 is ignored and says so.
  process.on('SIGUSR1', () => {
    const services = [...runtime.services.values()].map((s) => ({ service: s.name, active: s.activeConnections, usable: s.pool.usableCount, backends: s.pool.backends.length }))
    runtime.logger.info({ signal: 'SIGUSR1', active: runtime.activeConnections, services }, 'status')
  })
  process.on('SIGUSR2', () => runtime.logger.info({ signal: 'SIGUSR2' }, 'SIGUSR2 ignored (SIGHUP reloads, SIGTERM stops)'))
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = buildProgram()
  const unknown = unknownCommandLine(program, argv.slice(2))
  if (unknown) {
    process.stderr.write(`l4lb: ${unknown}\n`)
    process.exitCode = EXIT_USAGE
    return
  }
  try {
    await program.parseAsync(argv as string[])
  } catch (err) {
    process.exitCode = exitFor(err)
  }
}

function exitFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed its message (help and version exit 0).
    return err.exitCode === 0 ? 0 : EXIT_USAGE
  }
  if (err instanceof ExitError) {
    process.stderr.write(`l4lb: ${err.message}\n`)
    return err.exitCode
  }
  if (err instanceof ConfigFileError) {
    process.stderr.write(err.message + '\n')
    return EXIT_USAGE
  }
  if (err instanceof ConfigErrors) {
    process.stderr.write(`l4lb: ${err.errors[0]?.message ?? err.message}\n`)
    return EXIT_USAGE
  }
  if (err instanceof L4lbError) {
    process.stderr.write(`l4lb: ${err.message}\n`)
    return EXIT_RUNTIME
  }
  process.stderr.write(`l4lb: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  return EXIT_RUNTIME
}
