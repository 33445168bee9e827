#!/usr/bin/env node
// Runs every compiled *.test.js with node's own test runner, one file at a time: the integration tests share
// one libvirtd, one RabbitMQ and one Redis, and the machine has two cores. `--only-unit` skips *.int.test.js.
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawnSync } from 'node:child_process'

const root = new URL('..', import.meta.url).pathname
const roots = ['packages/shared', 'services/api', 'services/receiver', 'services/agents', 'services/console-gateway', 'cli', 'bench', 'test']
const filters = process.argv.slice(2).filter(a => !a.startsWith('--'))
const onlyUnit = process.argv.includes('--only-unit')

function walk (dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) walk(p, out)
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

const files = []
for (const r of roots) {
  // Workspaces compile test/ to dist/test; the end-to-end project (test/) compiles e2e/ and security/ to test/dist.
  const testDir = r === 'test' ? join(root, r, 'dist') : join(root, r, 'dist', 'test')
  try { statSync(testDir) } catch { continue }
  files.push(...walk(testDir, []))
}
const picked = files
  .filter(f => !onlyUnit || !f.endsWith('.int.test.js'))
  .filter(f => filters.length === 0 || filters.some(x => relative(root, f).includes(x)))
  .sort()
if (picked.length === 0) {
  console.error('no test files found: run `npm run build` first')
  process.exit(1)
}
// The spec reporter as the run goes, then a line per reason that tests were skipped (scripts/lib/skip-summary.mjs).
const skipSummary = new URL('./lib/skip-summary.mjs', import.meta.url).href
const args = ['--enable-source-maps', '--test', '--test-concurrency=1', '--test-reporter=spec', '--test-reporter-destination=stdout',
  `--test-reporter=${skipSummary}`, '--test-reporter-destination=stdout', ...picked]
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root, env: { ...process.env, PORTHOLE_TEST: '1' } })
process.exit(r.status ?? 1)
