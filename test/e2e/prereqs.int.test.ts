// scripts/prereqs.sh, the machine check `npm start` runs first (and `npm test` with --check), asked of this
// machine's dpkg, libvirtd and node_modules. Only the reporting paths run here: a test never installs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from '@porthole/testkit'

interface Result { code: number, stdout: string, stderr: string }

async function prereqs (args: string[], o: { asNobody?: boolean } = {}): Promise<Result> {
  const [cmd, argv] = o.asNobody === true
    ? ['setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'bash', 'scripts/prereqs.sh', ...args]]
    : ['bash', ['scripts/prereqs.sh', ...args]]
  return await new Promise(resolve => {
    execFile(cmd, argv, { cwd: REPO_ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

/** A package list with one name no Debian archive has. */
function absentList (t: { after: (fn: () => void) => void }): { file: string, name: string } {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-prereqs-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  const name = `porthole-absent-${randomBytes(4).toString('hex')}`
  const file = join(dir, 'packages.txt')
  writeFileSync(file, `# a test list\n${name}   # not in any archive\n`, { mode: 0o644 })
  return { file, name }
}

const LISTED = readFileSync(join(REPO_ROOT, 'scripts', 'debian-packages.txt'), 'utf8')
  .split('\n').map(l => l.replace(/#.*/, '').trim()).filter(l => l !== '')

test('--check finds this machine ready: every listed package, libvirtd and the native binding', async () => {
  const r = await prereqs(['--check'])
  assert.equal(r.code, 0, r.stdout + r.stderr)
  assert.ok(r.stdout.split('\n').includes(`prereqs: Debian packages present: ${LISTED.join(' ')}`), r.stdout)
  assert.match(r.stdout, /^prereqs: libvirtd answers at qemu:\/\/\/system$/m)
  assert.match(r.stdout, /^prereqs: native libvirt binding built/m)
  assert.ok(existsSync(join(REPO_ROOT, 'node_modules/@unraid/libvirt/build/Release/libvirt.node')))
})

test('--check reports a missing package with the one apt-get line, exits 1, and installs nothing', async (t) => {
  const { file, name } = absentList(t)
  const r = await prereqs(['--check', '--packages', file, 'make'])
  assert.equal(r.code, 1, r.stdout + r.stderr)
  assert.match(r.stderr, new RegExp(`^prereqs: MISSING: Debian packages not installed: ${name}\\. `, 'm'))
  assert.match(r.stderr, new RegExp(`^  sudo apt-get install -y --no-install-recommends ${name}$`, 'm'))
  assert.doesNotMatch(r.stdout + r.stderr, /installing|apt-get update/)
  // The rest of the report still came: the check goes on past a missing piece.
  assert.match(r.stdout, /^prereqs: libvirtd answers at/m)
})

test('not as root, a missing package stops it at once with the sudo line to run', async (t) => {
  const { file, name } = absentList(t)
  const r = await prereqs(['--packages', file], { asNobody: process.getuid?.() === 0 })
  assert.equal(r.code, 1, r.stdout + r.stderr)
  const lines = r.stderr.trimEnd().split('\n')
  assert.equal(lines.at(-1), `  sudo apt-get install -y --no-install-recommends ${name}`, r.stderr)
  assert.doesNotMatch(r.stdout + r.stderr, /installing|libvirtd|binding/, 'it went on past the missing package')
})
