#!/usr/bin/env node
// Prints the settings table of every service from the specs they declare (src/config.ts), so the README's
// table is generated, not hand-kept. `--check` exits 1 when README.md misses a setting. The table itself is
// `settingsTable` of @porthole/shared/config (tested there); the services come from services/services.json.
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { isSpec, settingsTable } from '@porthole/shared/config'
import { settingsOf, SERVICE_NAMES } from './lib/services.mjs'

const root = new URL('..', import.meta.url).pathname

async function specs () {
  const out = []
  for (const s of SERVICE_NAMES) {
    // The one tool that loads a service's module (the one services/services.json names as its settings):
    // the table is generated from each service's own declarations.
    const mod = await import(pathToFileURL(settingsOf(s)).href) // eslint-disable-line porthole/static-imports
    for (const v of Object.values(mod)) if (isSpec(v)) out.push([s, v])
  }
  return out
}

const all = await specs()
if (process.argv.includes('--check')) {
  const names = new Set(all.flatMap(([, spec]) => Object.keys(spec)))
  const readme = readFileSync(`${root}README.md`, 'utf8')
  const missing = [...names].filter(n => !readme.includes('`' + n + '`'))
  if (missing.length > 0) { console.error(`README.md does not list: ${missing.join(', ')}`); process.exit(1) }
  console.log(`README.md lists all ${names.size} settings`)
} else {
  console.log(settingsTable(all))
}
