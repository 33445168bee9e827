// The docs stay true to the tree: the README's settings table is generated from the services' own declarations, and every path the docs name exists.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from '@porthole/testkit'

test('README.md lists every setting every service reads', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/settings-table.mjs', '--check'], { cwd: REPO_ROOT })
  assert.match(stdout, /lists all \d+ settings/)
})

const read = (p: string): string => readFileSync(join(REPO_ROOT, p), 'utf8')
/** The README section under a heading, up to the next heading. */
function section (heading: string): string {
  const readme = read('README.md')
  const at = readme.indexOf(`\n${heading}\n`)
  assert.ok(at >= 0, `README.md has no ${heading}`)
  const rest = readme.slice(at + heading.length + 2)
  const end = rest.search(/\n#{2,3} /)
  return end === -1 ? rest : rest.slice(0, end)
}

test('the README\'s Prerequisites name exactly the packages of scripts/debian-packages.txt', () => {
  const listed = read('scripts/debian-packages.txt').split('\n').map(l => l.replace(/#.*/, '').trim()).filter(l => l !== '')
  const span = /`(libvirt-daemon-system [^`]+)`/.exec(section('### Prerequisites'))
  assert.ok(span !== null, 'no package list in the Prerequisites')
  assert.deepEqual((span[1] as string).split(/\s+/).sort(), [...listed].sort())
})

test('npm start, npm test and CI all go through scripts/prereqs.sh, and CI runs the README\'s test command', () => {
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
  assert.match(scripts.start ?? '', /^bash scripts\/prereqs\.sh && npm run build && /)
  assert.match(scripts.test ?? '', /^bash scripts\/prereqs\.sh --check && /)
  const ci = read('.ci/run')
  assert.match(ci, /^bash scripts\/prereqs\.sh --system-only /m)
  assert.match(ci, /^npm test$/m)
  assert.match(section('## Quick start'), /^npm ci && npm start +#/m)
  assert.match(section('## Quick start'), /^npm test +#/m)
})

test('the libvirt binding is optional for npm ci, and its build is still approved', () => {
  const agents = JSON.parse(read('services/agents/package.json')) as { dependencies?: Record<string, string>, optionalDependencies?: Record<string, string> }
  assert.ok(agents.optionalDependencies?.['@unraid/libvirt'] !== undefined)
  assert.equal(agents.dependencies?.['@unraid/libvirt'], undefined)
  assert.equal((JSON.parse(read('package.json')) as { allowScripts: Record<string, boolean> }).allowScripts['@unraid/libvirt'], true)
})

test('the README names the tests that need a guacd, and they skip naming GUACD_HOST', () => {
  const files = [...section('### Tests that need a guacd').matchAll(/`([\w/.-]+\.test\.ts)`/g)].map(m => m[1] as string)
  const live = files.find(f => f.includes('guacamole-live'))
  assert.ok(live !== undefined, 'the README does not name guacamole-live.int.test.ts')
  assert.match(read(live), /'guacd: GUACD_HOST not set — /)
})

test('every file the docs name by its path exists (a move updates the docs that lead a newcomer to it)', () => {
  const docs = ['README.md', 'bench/README.md', 'deploy/README.md', ...readdirSync(join(REPO_ROOT, 'docs')).filter(f => f.endsWith('.md')).map(f => `docs/${f}`)]
  const missing: string[] = []
  for (const doc of docs) {
    for (const m of read(doc).matchAll(/`((?:services|packages|scripts|cli|bench|test|deploy|docs)\/[\w./-]+)`/g)) {
      const path = (m[1] as string).replace(/\/$/, '')
      if (!existsSync(join(REPO_ROOT, path))) missing.push(`${doc}: ${path}`)
    }
  }
  assert.deepEqual(missing, [])
})
