#!/usr/bin/env node
// Runs the benchmarks in bench/ (compiled): `npm run bench` runs all; `npm run bench -- pipeline --quick` one.
import { readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'

const dir = new URL('../bench/dist/src/', import.meta.url).pathname
const pick = process.argv.slice(2).filter(a => !a.startsWith('--'))
const flags = process.argv.slice(2).filter(a => a.startsWith('--'))
// Modules the benchmarks share, and tools, are not benchmarks.
const NOT_BENCHES = new Set(['stats.js', 'cpu.js', 'cpuprofile-summary.js'])
const all = readdirSync(dir).filter(f => f.endsWith('.js') && !NOT_BENCHES.has(f)).map(f => f.replace(/\.js$/, ''))
// With --json a benchmark's stdout is one JSON object: this script's own lines go to stderr then.
const say = flags.includes('--json') ? console.error : console.log
for (const name of pick.length > 0 ? pick : all) {
  if (!all.includes(name)) { console.error(`no benchmark ${name}; have: ${all.join(', ')}`); process.exit(2) }
  say(`\n=== bench ${name}`)
  const r = spawnSync(process.execPath, ['--enable-source-maps', dir + name + '.js', ...flags], { stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
