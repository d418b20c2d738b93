/**
 * The command line: flags → a Config (through lib/config, which names every bad value), then
 * the runtime. Bad input exits 2 with one line; a runtime failure (port in use) exits 1 with one
 * line; nothing the user typed ever produces a stack trace.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Command, CommanderError, Option } from 'commander'
import { applyFlagOverrides, configFromFlags, ConfigErrors, deprecatedFlagWarnings, SERVICE, TOP, type Config, type FlagValues } from '../config/index.js'
import { choosePlane, planeProblem } from '../native/index.js'
import type { AnySetting } from '../config/table.js'
import { ConfigFileError, loadConfigFile } from '../config/file.js'
import { startAdmin } from '../admin/index.js'
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
import { mapCommand } from './map.js'

export const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version

export const EXIT_USAGE = 2
export const EXIT_RUNTIME = 1

/** Thrown inside actions for a clean exit with one line. */
export class ExitError extends L4lbError {
  constructor(readonly exitCode: number, message: string) {
    super(exitCode === EXIT_USAGE ? 'L4LB_ERR_USAGE' : 'L4LB_ERR_ADMIN_REQUEST', message)
    this.name = 'ExitError'
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

/**
 * The run options come from the settings table (lib/config/settings.ts): a row's flag, argument,
 * help and default. Deprecated spellings still parse (hidden from --help) and warn at start.
 */
function settingOptions(rows: readonly AnySetting[]): Option[] {
  const out: Option[] = []
  for (const r of rows) {
    const inner = (r.kind as { rows?: readonly AnySetting[] }).rows
    if (inner) {
      out.push(...settingOptions(inner))
      continue
    }
    if (!r.flag) continue
    const shown = r.default === undefined || r.default === false || (Array.isArray(r.default) && r.default.length === 0) ? '' : r.kind.show(r.default)
    const help = shown === '' || /\(default/.test(r.help) ? r.help : `${r.help} (default ${shown})`
    const names = (flag: string): string => `${r.short && flag === r.flag ? `${r.short}, ` : ''}${flag}${r.arg ? ` ${r.arg}` : ''}`
    for (const flag of [r.flag, ...r.deprecatedFlags]) {
      const option = new Option(names(flag), flag === r.flag ? help : `deprecated: use ${r.flag}`)
      if (r.repeatable) option.argParser(collect)
      if (flag !== r.flag) option.hideHelp()
      out.push(option)
    }
  }
  return out
}

function addRunOptions(cmd: Command): Command {
  for (const option of [...settingOptions(SERVICE), ...settingOptions(TOP)]) cmd.addOption(option)
  return cmd.option('-c, --config <file>', 'YAML config file (flags override it; see conf/)')
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
      for (const warning of config.warnings ?? []) process.stderr.write(`${opts.config}: warning: ${warning}\n`)
      const planeError = planeProblem(config)
      if (planeError !== undefined) throw new ExitError(EXIT_USAGE, planeError)
      process.stdout.write(`${opts.config}: ok (${config.services.length} service${config.services.length === 1 ? '' : 's'}: ${config.services.map((s) => s.name).join(', ')})\n`)
      for (const s of config.services) {
        const choice = choosePlane(s, config.dataPlane)
        process.stdout.write(`  ${s.name}: ${choice.plane} plane (${choice.why})\n`)
      }
    })

  program
    .command('status')
    .description('show services and backends of a running l4lb (from its admin endpoint)')
    .option('--admin <host:port|path>', `admin endpoint (default: the admin of the config file, ${DEFAULT_CONFIG_FILE} if it exists)`)
    .option('--admin-token-file <file>', 'bearer token file (default: the config file\'s admin.tokenFile)')
    .option('-c, --config <file>', 'read the admin endpoint and token file from this config')
    .option('--json', 'print the raw JSON')
    .option('--healthy', 'exit 0 when every service has a usable backend (GET /healthz), else 1: for vrrp_script and BGP health gates')
    .action(async (opts: AdminOptions & { json?: boolean; healthy?: boolean }) => statusCommand(opts))

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

  addRunOptions(mapCommand(program, loadConfig))

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
  if (!Array.isArray(opts.listen) || opts.listen.length === 0) throw new ExitError(EXIT_USAGE, '--listen: at least one listen address is required (e.g. -l :5432)')
  return configFromFlags(opts)
}

async function runCommand(opts: FlagValues): Promise<void> {
  const config = loadConfig(opts)
  const planeError = planeProblem(config)
  if (planeError !== undefined) throw new ExitError(EXIT_USAGE, planeError)
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
  for (const warning of new Set([...(config.warnings ?? []), ...deprecatedFlagWarnings(opts)])) logger.warn({ deprecated: true }, warning)
  const held = holdSignals()
  const runtime = await Runtime.start(config, logger)
  const admin = await startAdmin(config.admin, runtime, logger)
  if (admin) logger.info({ admin: admin.address() }, 'admin endpoint listening')
  const drainTimeoutMs = Math.max(...config.services.map((s) => s.drainTimeoutMs))
  installSignals(runtime, flush, drainTimeoutMs, () => admin?.close())
  installReload(runtime, opts)
  for (const signal of held()) process.emit(signal, signal)
  await sdNotify('READY=1', `serving ${config.services.length} service(s)`)
}

const HELD_SIGNALS: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGUSR1', 'SIGUSR2']

/**
 * Holds the signals l4lb handles while it starts, from before its first listener opens (the
 * `listening` line) until its handlers are in place: Node's default for SIGHUP and SIGUSR2 is
 * to exit, so a reload sent as soon as the log said `listening` killed it while the admin
 * endpoint was still starting. Returns a function that stops holding and gives the held
 * signals, in order, to be delivered to the real handlers.
 */
function holdSignals(): () => NodeJS.Signals[] {
  const held: NodeJS.Signals[] = []
  const hold = (signal: NodeJS.Signals): void => void held.push(signal)
  for (const signal of HELD_SIGNALS) process.on(signal, hold)
  return () => {
    for (const signal of HELD_SIGNALS) process.off(signal, hold)
    return held
  }
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
    // Logged once the listeners are closed, so the line means "no new connection gets in"
    // (the native plane closes its threads' listeners asynchronously).
    const draining = (): void => runtime.logger.info({ signal, active: runtime.activeConnections, drainTimeoutMs }, 'stopping: draining connections')
    runtime.stop(drainTimeoutMs, draining).then(
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
  // `l4lb map … | head`: a reader that stops early is not an error (and no stack trace).
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw err
  })
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
