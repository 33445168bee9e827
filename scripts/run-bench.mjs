#!/usr/bin/env node
// Runs the benchmarks in bench/ (compiled): `npm run bench` runs all; `npm run bench -- pipeline --quick` one.
import { readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

const dir = new URL('../bench/dist/src/', import.meta.url).pathname
const pick = process.argv.slice(2).filter(a => !a.startsWith('--'))
const flags = process.argv.slice(2).filter(a => a.startsWith('--'))
const all = readdirSync(dir).filter(f => f.endsWith('.js') && f !== 'stats.js').map(f => f.replace(/\.js$/, ''))
for (const name of pick.length > 0 ? pick : all) {
  if (!all.includes(name)) { console.error(`no benchmark ${name}; have: ${all.join(', ')}`); process.exit(2) }
  console.log(`\n=== bench ${name}`)
  const r = spawnSync(process.execPath, ['--enable-source-maps', dir + name + '.js', ...flags], { stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
