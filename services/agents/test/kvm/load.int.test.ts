// The agents without the libvirt binding, as `npm ci` leaves them on a machine without libvirt-dev. The
// compiled agents run as a process; a module resolution hook (node --import) makes '@unraid/libvirt'
// resolve from a directory where it is missing, or where only its JavaScript is (no native part built).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { REPO_ROOT, startStack, type Stack } from '@porthole/testkit'

/** A `--import` module that resolves '@unraid/libvirt' as if imported from `from` (a directory). */
function resolveFrom (t: { after: (fn: () => void) => void }, from: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-hook-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const parentURL = pathToFileURL(join(from, 'importer.mjs')).href
  writeFileSync(join(dir, 'hooks.mjs'), `export async function resolve (specifier, context, next) {
  return specifier === '@unraid/libvirt' ? await next(specifier, { ...context, parentURL: ${JSON.stringify(parentURL)} }) : await next(specifier, context)
}\n`)
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})\n`)
  return ['--import', pathToFileURL(join(dir, 'register.mjs')).href]
}

/** An empty directory: no node_modules on the way up from it (os.tmpdir() has none). */
function emptyDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'porthole-nolibvirt-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function agentsWithout (t: { after: (fn: () => Promise<void>) => void }, nodeArgs: string[]): Promise<Stack> {
  return await startStack(t, { services: [], nodeArgs })
}

test('without the @unraid/libvirt package the kvm agent stops its start with exit code 2, saying what to install and run', async (t) => {
  const stack = await agentsWithout(t, resolveFrom(t, emptyDir(t)))
  await assert.rejects(stack.start('agents', { AGENT_TYPES: 'kvm,ipmi' }), (err: Error) => {
    assert.match(err.message, /agents exited with 2 before ready/)
    assert.match(err.message, /^agents: bad configuration: AGENT_TYPES: the kvm agent needs @unraid\/libvirt, which is not installed .*: run `sudo apt-get install libvirt-dev && npm ci`, or leave kvm out of AGENT_TYPES$/m)
    return true
  })
})

test('with the package but no native part built, the kvm agent stops its start with exit code 2, naming npm rebuild', async (t) => {
  // The package's JavaScript without build/ (as after `npm ci --ignore-scripts`), its one dependency linked.
  const dir = emptyDir(t)
  const real = join(REPO_ROOT, 'node_modules', '@unraid', 'libvirt')
  cpSync(join(real, 'package.json'), join(dir, 'node_modules', '@unraid', 'libvirt', 'package.json'))
  cpSync(join(real, 'dist'), join(dir, 'node_modules', '@unraid', 'libvirt', 'dist'), { recursive: true })
  symlinkSync(join(REPO_ROOT, 'node_modules', 'xml2js'), join(dir, 'node_modules', 'xml2js'))
  const stack = await agentsWithout(t, resolveFrom(t, dir))
  await assert.rejects(stack.start('agents', { AGENT_TYPES: 'kvm' }), (err: Error) => {
    assert.match(err.message, /agents exited with 2 before ready/)
    assert.match(err.message, /^agents: bad configuration: AGENT_TYPES: the kvm agent needs the native part of @unraid\/libvirt, which does not load \(Cannot find module .*build\/Release\/libvirt.*\): run `sudo apt-get install libvirt-dev && npm rebuild @unraid\/libvirt`, or leave kvm out of AGENT_TYPES$/m)
    return true
  })
})

test('without the package, an agents process serving ipmi and ovirt starts and stops cleanly', async (t) => {
  const stack = await agentsWithout(t, resolveFrom(t, emptyDir(t)))
  await stack.start('agents', { AGENT_TYPES: 'ipmi,ovirt' })
  assert.match(stack.logs(), /"types":\["ipmi","ovirt"\],"metricsPort":\d+,"msg":"ready"/)
  const p = stack.procs.get('agents')
  assert.ok(p !== undefined)
  const exited = new Promise<number | null>(resolve => p.once('exit', (code) => resolve(code)))
  await stack.stop('agents')
  assert.equal(await exited, 0)
})
