#!/usr/bin/env node
/**
 * `npm install` hook: builds the native data plane's addon with node-gyp where a compiler exists.
 * It never fails the install: without python3, make or a C compiler (or on a build error) it says
 * so in one line and exits 0, and l4lb runs every service on the node plane (README "Data planes").
 *
 * Node headers come from the local Node (node-gyp would otherwise download them, which an
 * offline machine cannot): <prefix>/include/node of the running Node, or /usr/include/node. The
 * addon uses only N-API (ABI-stable), so one build serves Node 20 and 24 alike.
 *
 *   node lib/native/build.mjs            # what npm install runs
 *   node lib/native/build.mjs --verbose  # show node-gyp's output
 *   L4LB_SKIP_NATIVE=1 npm install       # do not build
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const verbose = process.argv.includes('--verbose')

function say(line) {
  process.stderr.write(`l4lb: ${line}\n`)
}

function onPath(command) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)))
}

/** node-gyp: npm's own copy (npm tells scripts where), the one beside this Node's npm, or PATH. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
  ]
  for (const c of candidates) if (c && existsSync(c)) return [process.execPath, c]
  try {
    return [process.execPath, createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js')]
  } catch {
    return onPath('node-gyp') ? ['node-gyp'] : undefined
  }
}

/** A directory with include/node/node_api.h, for --nodedir. */
function nodeDir() {
  const candidates = [join(dirname(process.execPath), '..'), '/usr', '/usr/local']
  for (const dir of candidates) if (existsSync(join(dir, 'include', 'node', 'node_api.h'))) return dir
  return undefined
}

function main() {
  if (process.env.L4LB_SKIP_NATIVE === '1') return say('native data plane not built (L4LB_SKIP_NATIVE=1): services run on the node plane')
  if (process.platform !== 'linux') return say(`native data plane not built (Linux only, this is ${process.platform}): services run on the node plane`)
  const missing = ['python3', 'make'].filter((c) => !onPath(c))
  if (!onPath('cc') && !onPath('gcc') && !onPath('clang')) missing.push('a C compiler (cc/gcc)')
  if (!onPath('g++') && !onPath('c++') && !onPath('clang++')) missing.push('g++ (node-gyp links with it)')
  if (missing.length > 0) return say(`native data plane not built (missing ${missing.join(', ')}): services run on the node plane`)
  const gyp = nodeGyp()
  if (gyp === undefined) return say('native data plane not built (node-gyp not found): services run on the node plane')
  const nodedir = nodeDir()
  if (nodedir === undefined) return say('native data plane not built (no Node headers: include/node/node_api.h): services run on the node plane')
  const args = [...gyp.slice(1), 'rebuild', '--directory', here, `--nodedir=${nodedir}`]
  const run = spawnSync(gyp[0], args, { stdio: verbose ? 'inherit' : 'pipe', encoding: 'utf8' })
  if (run.status === 0 && existsSync(join(here, 'build', 'Release', 'l4lb_native.node'))) {
    if (verbose) say('native data plane built')
    return undefined
  }
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n')
  if (output !== '') process.stderr.write(`${output}\n`)
  return say(`native data plane not built (node-gyp failed${run.error ? `: ${run.error.message}` : ''}): services run on the node plane`)
}

try {
  main()
} catch (err) {
  say(`native data plane not built (${err instanceof Error ? err.message : String(err)}): services run on the node plane`)
}
process.exitCode = 0
