/**
 * l4lb as a library: `start(config)` runs the same services the CLI runs (same validation, same
 * runtime, the admin endpoint when the config has one) inside the caller's process and returns
 * a handle to reload, inspect, drain and close them. The handle owns everything it started;
 * nothing here installs signal handlers or writes to process state — the program embedding
 * l4lb decides what SIGTERM means.
 */
import type { Logger } from 'pino'
import { startAdmin, statusOf, type Status } from '../admin/index.js'
import { formatHostPort } from '../address/index.js'
import { isBalanceName } from '../balance/index.js'
import { ConfigErrors, validateConfig, yamlKeyName, type Config, type RawConfig, type ServiceConfig } from '../config/index.js'
import { ConfigError } from '../errors.js'
import { createLogger } from '../log/index.js'
import { Runtime } from '../runtime/index.js'
import { Registry } from './registry.js'

/**
 * The config as a program writes it: the YAML file's shape (camelCase keys, durations as "5s",
 * backends as "host:port" strings or objects), e.g.
 * `{ services: [{ name: 'pg', listen: [':5432'], backends: ['10.0.0.1:5432'] }] }`.
 */
export type ConfigInput = RawConfig & { services: unknown[] }

export interface StartOptions {
  /** Algorithms and check types the config may name besides the built-in ones. */
  registry?: Registry
  /** Where logs go. Default: a pino logger built from the config's `log` (JSON on stdout, level info). */
  logger?: Logger
}

export interface ReloadResult {
  added: string[]
  removed: string[]
  updated: string[]
  rebound: string[]
}

export interface ListenAddress {
  readonly service: string
  readonly protocol: 'tcp' | 'udp'
  /** `host:port` with the port actually bound (a `:0` in the config gets a free port). */
  readonly address: string
  readonly port: number
}

/** What `start` returns: the running services. */
export interface L4lb {
  /** The validated config now running. */
  readonly config: Config
  /** Every listening socket, with the ports really bound. */
  addresses(): ListenAddress[]
  /** The same document as `GET /status` on the admin endpoint. */
  status(): Status
  /**
   * Applies a new config in place (like SIGHUP): listeners of unchanged services stay open,
   * established connections finish on the objects they started with. An invalid config
   * rejects with ConfigErrors and changes nothing.
   */
  reload(config: ConfigInput | Config): Promise<ReloadResult>
  /** Stops accepting, waits up to `timeoutMs` (default: the largest drainTimeout) for connections, closes the rest. */
  drain(timeoutMs?: number): Promise<void>
  /** Stops at once: listeners and connections closed, probers stopped. */
  close(): Promise<void>
}

/**
 * Validates a config (the YAML shape) the way `l4lb check` does; throws ConfigErrors naming
 * every bad key. Names registered in `registry` are accepted for `balance` and `health.type`.
 */
export function parseConfig(input: ConfigInput | Config, registry?: Registry): Config {
  if (isConfig(input)) return input
  // Validation knows the built-in names; a registered one stands in as a built-in of the same
  // kind while the rest of the service is checked, and is put back after.
  const custom = new Map<number, { balance?: string; check?: string }>()
  const services = Array.isArray(input.services) ? input.services.map((raw, i) => {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return raw
    const s = { ...(raw as Record<string, unknown>) }
    const names: { balance?: string; check?: string } = {}
    if (typeof s.balance === 'string' && !isBalanceName(s.balance) && registry?.algorithm(s.balance)) {
      names.balance = s.balance
      s.balance = 'round-robin'
    }
    const health = s.health && typeof s.health === 'object' ? { ...(s.health as Record<string, unknown>) } : undefined
    if (health && typeof health.type === 'string' && registry?.check(health.type)) {
      names.check = health.type
      s.health = { ...health, type: 'tcp' }
    }
    if (names.balance || names.check) custom.set(i, names)
    return s
  }) : input.services
  const config = validateConfig({ ...input, services }, yamlKeyName)
  if (custom.size === 0) return config
  const problems: ConfigError[] = []
  for (const [i, names] of custom) {
    const check = names.check ? registry?.check(names.check) : undefined
    const problem = check?.validate?.({ ...config.services[i]!.health, type: names.check as ServiceConfig['health']['type'] })
    if (problem) problems.push(new ConfigError(`services[${i}].health`, undefined, `${names.check}: ${problem}`, ['services', i, 'health']))
  }
  if (problems.length > 0) throw new ConfigErrors(problems)
  return {
    ...config,
    services: config.services.map((s, i): ServiceConfig => {
      const names = custom.get(i)
      if (!names) return s
      return {
        ...s,
        ...(names.balance ? { balance: names.balance } : {}),
        ...(names.check ? { health: { ...s.health, type: names.check as ServiceConfig['health']['type'] } } : {}),
      }
    }),
  }
}

/** A validated Config (from parseConfig or loadConfigFile) rather than the YAML shape. */
function isConfig(input: ConfigInput | Config): input is Config {
  const first = (input.services as unknown[])[0] as Partial<ServiceConfig> | undefined
  return Array.isArray((input as Config).resolvers) && first !== undefined && Array.isArray(first.protocols) && typeof first.health === 'object'
}

/** Starts every service of `config`; rejects (with nothing left running) when one cannot start. */
export async function start(input: ConfigInput | Config, options: StartOptions = {}): Promise<L4lb> {
  const registry = options.registry ?? new Registry()
  let config = parseConfig(input, registry)
  const logger = options.logger ?? createLogger(config.log).logger
  const runtime = await Runtime.start(config, logger, registry)
  const admin = await startAdmin(config.admin, runtime, logger)
  let closed: Promise<void> | undefined
  const stop = (timeoutMs: number): Promise<void> => {
    closed ??= (async () => {
      await runtime.stop(timeoutMs)
      await admin?.close()
    })()
    return closed
  }
  return {
    get config() {
      return config
    },
    addresses() {
      const out: ListenAddress[] = []
      for (const h of runtime.services.values()) {
        for (const a of h.tcp?.addresses() ?? []) out.push({ service: h.name, protocol: 'tcp', address: formatHostPort(a.host, a.port), port: a.port })
        for (const a of h.udp?.addresses() ?? []) out.push({ service: h.name, protocol: 'udp', address: formatHostPort(a.host, a.port), port: a.port })
      }
      return out
    },
    status: () => statusOf(runtime),
    async reload(next) {
      const parsed = parseConfig(next, registry)
      const result = await runtime.reload(parsed)
      config = parsed
      return result
    },
    drain: (timeoutMs) => stop(timeoutMs ?? Math.max(0, ...config.services.map((s) => s.drainTimeoutMs))),
    close: () => stop(0),
  }
}
