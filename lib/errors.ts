/**
 * Errors are values with stable codes (after undici's lib/core/errors.js): one class per
 * failure family, a `code` that scripts and log queries can rely on, and a message that reads
 * as one line for people. `fields()` gives the same facts to pino.
 */
export const ERROR_CODES = [
  /** A bad flag or config value (ConfigError; ConfigErrors lists several). */
  'L4LB_ERR_CONFIG',
  /** A config file that cannot be used, with a line per problem (ConfigFileError). */
  'L4LB_ERR_CONFIG_FILE',
  /** A malformed `host:port`, IP or CIDR. */
  'L4LB_ERR_ADDRESS',
  /** A listening socket that cannot be opened (port in use, permission). */
  'L4LB_ERR_LISTEN',
  /** A received PROXY header that is refused (`reason` says which rule). */
  'L4LB_ERR_PROXY_HEADER',
  /** A backend name that does not resolve. */
  'L4LB_ERR_RESOLVE',
  /** A balancer given input that breaks its contract (a caller's bug, caught before a skewed table). */
  'L4LB_ERR_BALANCE',
  /** A method called out of order (a caller's bug). */
  'L4LB_ERR_STATE',
  /** The command line cannot be used as given (exit 2). */
  'L4LB_ERR_USAGE',
  /** `l4lb status|drain|…`: the admin endpoint could not be reached or refused (exit 1). */
  'L4LB_ERR_ADMIN_REQUEST',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

export class L4lbError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'L4lbError'
    this.code = code
  }

  fields(): { code: ErrorCode; err: string } {
    return { code: this.code, err: this.message }
  }
}

/**
 * A bad flag or config value. `key` is what the user typed (`--backend`, `services[0].listen`),
 * `value` what they gave; the message names both so the line alone says what to fix.
 */
export class ConfigError extends L4lbError {
  readonly key: string
  readonly value: unknown
  readonly problem: string
  /** Where in the config document the value sits (for `FILE:LINE:` in `l4lb check`). */
  readonly path: readonly (string | number)[]
  constructor(key: string, value: unknown, problem: string, path: readonly (string | number)[] = []) {
    super('L4LB_ERR_CONFIG', value === undefined ? `${key}: ${problem}` : `${key} ${JSON.stringify(value)}: ${problem}`)
    this.name = 'ConfigError'
    this.key = key
    this.value = value
    this.problem = problem
    this.path = path
  }
}

export class AddressError extends L4lbError {
  constructor(value: string, problem: string) {
    super('L4LB_ERR_ADDRESS', `${JSON.stringify(value)}: ${problem}`)
    this.name = 'AddressError'
  }
}

export class ListenError extends L4lbError {
  constructor(address: string, problem: string, cause?: unknown) {
    super('L4LB_ERR_LISTEN', `cannot listen on ${address}: ${problem}`, { cause })
    this.name = 'ListenError'
  }
}

/** A balancer's input breaks the contract of lib/balance/types.ts. */
export class BalanceError extends L4lbError {
  constructor(algorithm: string, problem: string) {
    super('L4LB_ERR_BALANCE', `${algorithm}: ${problem}`)
    this.name = 'BalanceError'
  }
}

/** Called out of order: a bug in the caller, reported with a code like every other failure. */
export class StateError extends L4lbError {
  constructor(message: string) {
    super('L4LB_ERR_STATE', message)
    this.name = 'StateError'
  }
}

export class ProxyHeaderError extends L4lbError {
  readonly reason: string
  constructor(reason: string, detail: string) {
    super('L4LB_ERR_PROXY_HEADER', `PROXY header ${reason}: ${detail}`)
    this.name = 'ProxyHeaderError'
    this.reason = reason
  }
}

export class ResolveError extends L4lbError {
  constructor(host: string, problem: string, cause?: unknown) {
    super('L4LB_ERR_RESOLVE', `cannot resolve ${JSON.stringify(host)}: ${problem}`, { cause })
    this.name = 'ResolveError'
  }
}

/** An error from Node or the OS, reduced to its code for logs and metrics labels. */
export function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code
  return 'UNKNOWN'
}

/**
 * Error codes that say our own process or host is short of something (descriptors, buffers,
 * ephemeral ports), not that a backend failed: they are logged, never counted against a backend.
 */
export const LOCAL_ERROR_CODES: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL', 'EAGAIN'])

/** The one-line reason for a failed listen/bind, as `l4lb: cannot listen on …: <reason>` shows it. */
export function listenProblem(code: string): string {
  switch (code) {
    case 'EADDRINUSE':
      return 'address already in use'
    case 'EACCES':
      return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)'
    case 'EADDRNOTAVAIL':
      return 'address not available on this host'
    default:
      return code
  }
}
