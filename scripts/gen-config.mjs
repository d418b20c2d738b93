#!/usr/bin/env node
// Writes conf/l4lb.schema.json and the README's settings table from the settings table
// (lib/config/settings.ts, compiled to dist/). Run by `npm run build`; a test fails when the
// checked-in files are stale.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const { buildSchema, withSettingsTable } = await import(path.join(root, 'dist/lib/config/schema.js'))
writeFileSync(path.join(root, 'conf/l4lb.schema.json'), JSON.stringify(buildSchema(), null, 2) + '\n')
const readmePath = path.join(root, 'README.md')
writeFileSync(readmePath, withSettingsTable(readFileSync(readmePath, 'utf8')))
