/**
 * `l4lb install-service`: puts what a systemd host needs around an `npm install -g`-ed l4lb —
 * the unit (ExecStart pointing at the binary that is really installed), /etc/l4lb/l4lb.yaml from
 * the example (never overwritten), an admin token for the unit's LoadCredential= (never
 * overwritten) and the bash completion. `--root DIR` writes the same tree under DIR (like
 * DESTDIR), so packagers and tests never touch the real /etc. It does not run systemctl: the
 * printed next steps do, so a staged tree stays a staged tree.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ExitError, EXIT_USAGE } from './index.js'

/** The package root (this file is dist/lib/cli/install-service.js in it). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/** What systemd puts on a service's PATH when the unit sets none (systemd.exec(5), "PATH"). */
const SYSTEMD_DEFAULT_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin']

/** The placeholder binary the shipped unit names; replaced by the installed one. */
const TEMPLATE_BINARY = '/usr/bin/l4lb'

export interface InstallServiceOptions {
  /** Install prefix whose bin/l4lb the unit runs (npm's global prefix). Default: the one this l4lb lives under. */
  prefix?: string
  /** Write everything under this directory instead of / (the paths inside the files stay absolute). */
  root?: string
  /** Node's directory, for the unit's PATH when it is not on systemd's default one. Default: this process's. */
  nodeDir?: string
}

export interface InstallServiceResult {
  readonly binary: string
  readonly unitFile: string
  readonly configFile: string
  readonly configWritten: boolean
  readonly tokenFile: string
  readonly tokenWritten: boolean
  readonly completionFile: string
}

/**
 * The prefix `npm install -g` used for this copy: the package sits in PREFIX/lib/node_modules/l4lb
 * and npm links PREFIX/bin/l4lb to it. Undefined when this is a clone, not an installed package.
 */
export function installedPrefix(packageRoot = PACKAGE_ROOT): string | undefined {
  const real = realpathSync(packageRoot)
  const parts = real.split(path.sep)
  const n = parts.length
  if (n >= 4 && parts[n - 1] === 'l4lb' && parts[n - 2] === 'node_modules' && parts[n - 3] === 'lib') return parts.slice(0, n - 3).join(path.sep) || '/'
  return undefined
}

/** The shipped unit with ExecStart/ExecStartPre on `binary`, and PATH set when Node is elsewhere. */
export function renderUnit(template: string, binary: string, nodeDir: string): string {
  let unit = template.replaceAll(TEMPLATE_BINARY, binary)
  if (!SYSTEMD_DEFAULT_PATH.includes(nodeDir)) {
    // bin/l4lb starts with `#!/usr/bin/env node`: env must find this Node under systemd too.
    const line = `Environment=PATH=${[nodeDir, ...SYSTEMD_DEFAULT_PATH].join(':')}\n`
    unit = unit.replace(/^ExecStartPre=/m, line + 'ExecStartPre=')
  }
  return unit
}

export function installService(options: InstallServiceOptions = {}): InstallServiceResult {
  const root = path.resolve(options.root ?? '/')
  const prefix = options.prefix ?? installedPrefix()
  // From a clone (no prefix given or found) the unit runs this checkout's own bin/l4lb.
  const binary = prefix === undefined ? realpathSync(path.join(PACKAGE_ROOT, 'bin', 'l4lb')) : path.join(path.resolve(prefix), 'bin', 'l4lb')
  // In a staged tree (--root) the binary is installed later; on the real root it must exist now.
  if (options.root === undefined && !existsSync(binary)) {
    throw new ExitError(EXIT_USAGE, `--prefix: no l4lb at ${binary} (install it with \`npm install -g --prefix ${prefix ?? '/usr/local'} l4lb-VERSION.tgz\` first, or name the prefix it was installed under)`)
  }
  const under = (p: string): string => path.join(root, p)

  const unitFile = under('/etc/systemd/system/l4lb.service')
  mkdirSync(path.dirname(unitFile), { recursive: true })
  const template = readFileSync(path.join(PACKAGE_ROOT, 'conf', 'l4lb.service'), 'utf8')
  writeFileSync(unitFile, renderUnit(template, binary, options.nodeDir ?? path.dirname(process.execPath)), { mode: 0o644 })

  // The operator's config is theirs: written once from the example, never replaced.
  const configFile = under('/etc/l4lb/l4lb.yaml')
  mkdirSync(path.dirname(configFile), { recursive: true, mode: 0o755 })
  const configWritten = !existsSync(configFile)
  if (configWritten) copyFileSync(path.join(PACKAGE_ROOT, 'conf', 'l4lb.yaml'), configFile)

  // LoadCredential= fails the unit when its file is missing, so there always is one: random,
  // root-only; the service reads its copy under /run/credentials.
  const tokenFile = under('/etc/l4lb/admin-token')
  const tokenWritten = !existsSync(tokenFile)
  if (tokenWritten) {
    writeFileSync(tokenFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 })
    chmodSync(tokenFile, 0o600)
  }

  const completionFile = under(path.join(prefix ?? '/usr/local', 'share', 'bash-completion', 'completions', 'l4lb'))
  mkdirSync(path.dirname(completionFile), { recursive: true })
  copyFileSync(path.join(PACKAGE_ROOT, 'conf', 'completions', 'l4lb.bash'), completionFile)

  return { binary, unitFile, configFile, configWritten, tokenFile, tokenWritten, completionFile }
}

export function installServiceCommand(opts: { prefix?: string; root?: string }): void {
  const r = installService(opts)
  const lines = [
    `unit        ${r.unitFile} (ExecStart=${r.binary} run -c /etc/l4lb/l4lb.yaml)`,
    `config      ${r.configFile}${r.configWritten ? ' (from the example: edit its services)' : ' (exists: kept as it is)'}`,
    `admin token ${r.tokenFile}${r.tokenWritten ? ' (new, root-only)' : ' (exists: kept)'}`,
    `completion  ${r.completionFile}`,
    '',
    opts.root === undefined ? 'next: systemctl daemon-reload && systemctl enable --now l4lb; then l4lb status' : `staged under ${path.resolve(opts.root)}`,
  ]
  process.stdout.write(lines.join('\n') + '\n')
}
