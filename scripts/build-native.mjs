#!/usr/bin/env node
// npm's `install` hook (package.json): builds the native data plane (lib/native, DESIGN "Two data
// planes") where a C compiler exists. It never fails the install: without the addon l4lb runs
// the node plane and says so once at start. Set L4LB_NATIVE=0 to skip the build.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dir = path.join(root, 'lib', 'native')
const say = (line) => process.stderr.write(`l4lb: native plane: ${line}\n`)

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

if (process.env.L4LB_NATIVE === '0') {
  say('skipped (L4LB_NATIVE=0); the node plane runs every service')
} else if (!existsSync(path.join(dir, 'binding.gyp'))) {
  // Nothing to build in this version of the package.
} else if (!(process.env.CC ? onPath(process.env.CC.split(' ')[0]) : onPath('cc') || onPath('gcc') || onPath('clang')) || !onPath('make')) {
  say('no C compiler or make found; the node plane runs every service (install build-essential and reinstall for the native plane)')
} else {
  // npm puts its bundled node-gyp on PATH for install scripts (npm_config_node_gyp names it).
  const gyp = process.env.npm_config_node_gyp
  const [cmd, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []]
  const r = spawnSync(cmd, [...args, 'rebuild', '--directory', dir], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
  if (r.status === 0) say('built')
  else say(`build failed (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); the node plane runs every service`)
}
