#!/usr/bin/env node
// Runs every compiled *.test.js with node's own test runner, two files at a time: each test has its own
// namespace, queues, keys and domains on the one libvirtd, RabbitMQ and Redis, and most of a test file's time is
// spent waiting on those, so two cores serve two files. A file whose first lines say `// Runs alone: <why>`
// (one that restarts or loads what every test shares, or that a busy core would slow past what it waits for) runs afterwards,
// one at a time, with nothing beside it. TEST_CONCURRENCY=1 runs every file alone. `--only-unit` skips
// *.int.test.js.
// Then the run fails if any libvirt domain of its own is still defined: each run names its test domains
// `porthole-test-<run>-…` (PORTHOLE_TEST_RUN, read by the test kit), so that other runs on the same machine
// do not count; the leftovers are named, then removed.
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'

const root = new URL('..', import.meta.url).pathname
const roots = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).workspaces // every workspace's tests
const filters = process.argv.slice(2).filter(a => !a.startsWith('--'))
/** The mark of a file that runs alone, in its first lines (tsc keeps comments). */
const ALONE = /^\/\/ Runs alone: /m
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
// And the slowest files (scripts/lib/file-times.mjs).
const skipSummary = new URL('./lib/skip-summary.mjs', import.meta.url).href
const fileTimes = new URL('./lib/file-times.mjs', import.meta.url).href
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 2)
const alone = picked.filter(f => concurrency <= 1 || ALONE.test(readFileSync(f, 'utf8').slice(0, 4000)))
const together = picked.filter(f => !alone.includes(f))
const run = randomBytes(4).toString('hex')
let status = 0
for (const [files, n] of [[together, concurrency], [alone, 1]]) {
  if (files.length === 0) continue
  if (n === 1 && together.length > 0) console.log(`run-tests: ${files.length} file(s) that run alone: ${files.map(f => relative(root, f)).join(', ')}`)
  const args = ['--enable-source-maps', '--test', `--test-concurrency=${n}`, '--test-reporter=spec', '--test-reporter-destination=stdout',
    `--test-reporter=${skipSummary}`, '--test-reporter-destination=stdout', `--test-reporter=${fileTimes}`, '--test-reporter-destination=stdout', ...files]
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root, env: { ...process.env, PORTHOLE_TEST: '1', PORTHOLE_TEST_RUN: run } })
  if (r.status !== 0) status = r.status ?? 1
}
process.exit(leftoverDomains(`porthole-test-${run}-`) ? 1 : status)

/** True when domains named `prefix…` are still defined (they are listed, then destroyed and undefined). */
function leftoverDomains (prefix) {
  const uri = process.env.TEST_LIBVIRT_URI ?? 'qemu:///system'
  const virsh = (...a) => execFileSync('virsh', ['-c', uri, ...a], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] })
  let names
  try {
    names = virsh('list', '--all', '--name').split('\n').map(l => l.trim()).filter(n => n.startsWith(prefix))
  } catch (err) {
    console.error(`domain check: could not list libvirt's domains at ${uri} (${err.message.split('\n')[0]}); tests that need libvirt fail on their own`)
    return false
  }
  if (names.length === 0) {
    console.log(`domain check: no test domain of this run (${prefix}*) is left defined`)
    return false
  }
  console.error(`domain check FAILED: ${names.length} test domain(s) of this run left defined: ${names.join(', ')}`)
  for (const n of names) {
    try { virsh('destroy', n) } catch { /* not running */ }
    try { virsh('undefine', n) } catch (err) { console.error(`  could not undefine ${n}: ${err.message.split('\n')[0]}`) }
  }
  return true
}
