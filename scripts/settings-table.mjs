#!/usr/bin/env node
// Prints the settings table of every service from the specs they declare (src/config.ts), so the README's
// table is generated, not hand-kept. `--check` exits 1 when README.md misses a setting.
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { settingsOf, SERVICE_NAMES as services } from './lib/services.mjs'

const root = new URL('..', import.meta.url).pathname

async function specs () {
  const out = []
  for (const s of services) {
    // The one tool that loads a service's module (the one services/services.json names as its settings):
    // the table is generated from each service's own declarations.
    const mod = await import(pathToFileURL(settingsOf(s)).href) // eslint-disable-line porthole/static-imports
    for (const v of Object.values(mod)) {
      if (v !== null && typeof v === 'object' && Object.values(v).every(x => x !== null && typeof x === 'object' && typeof x.parse === 'function' && typeof x.doc === 'string')) {
        out.push([s, v])
      }
    }
  }
  return out
}

function fmtDefault (s) {
  if (s.required === true) return '**required**'
  if (s.default === undefined || s.default === '' || (Array.isArray(s.default) && s.default.length === 0)) return ''
  if (s.secret === true) return ''
  if (typeof s.default === 'object' && !Array.isArray(s.default)) return Object.keys(s.default).length === 0 ? '' : '`' + JSON.stringify(s.default) + '`'
  return '`' + (Array.isArray(s.default) ? s.default.join(',') : String(s.default)) + '`'
}

const all = await specs()
const rows = new Map() // name → { services: [], s }
for (const [svc, spec] of all) {
  for (const [name, s] of Object.entries(spec)) {
    const r = rows.get(name) ?? { services: [], s }
    r.services.push(svc)
    rows.set(name, r)
  }
}

if (process.argv.includes('--check')) {
  const readme = readFileSync(`${root}README.md`, 'utf8')
  const missing = [...rows.keys()].filter(n => !readme.includes('`' + n + '`'))
  if (missing.length > 0) { console.error(`README.md does not list: ${missing.join(', ')}`); process.exit(1) }
  console.log(`README.md lists all ${rows.size} settings`)
} else {
  console.log('| variable | default | used by | meaning |\n|---|---|---|---|')
  for (const [name, { services: svcs, s }] of rows) {
    console.log(`| \`${name}\` | ${fmtDefault(s)} | ${svcs.length === services.length ? 'all' : svcs.join(', ')} | ${s.doc.replaceAll('|', '\\|')} |`)
  }
}
