/**
 * Kiosk pool fixtures: a tiny golden qcow2 image made with `qemu-img` in a temp dir, a template domain whose
 * first disk it is (diskless in effect: the image is blank, the BIOS finds nothing to boot), an overlay and a
 * hooks directory, and what libvirt and the file system say of a pool's clones. Everything is removed in
 * `t.after`, and the removal of a pool's leftovers fails the test when something would not go.
 */
import { execFile } from 'node:child_process'
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { randomBytes } from 'node:crypto'
import type { Scope } from './index.js'
import { TEST_DOMAIN_PREFIX, removeDomain, tinyDomain, virsh, type TinyDomain } from './libvirt.js'

const run = promisify(execFile)

/** A directory qemu (another user) can reach: mkdtemp makes 0700 ones. Removed in `t.after`. */
export async function sharedDir (t: Scope, what: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `porthole-${what}-`))
  await chmod(dir, 0o755)
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

export interface GoldenOptions {
  /** Give the image an internal snapshot (a template the API must refuse). */
  snapshot?: boolean
  /** Make the image itself an overlay of another (refused too). */
  overlay?: boolean
  /** The first disk's format as the domain names it (default qcow2). */
  format?: 'qcow2' | 'raw'
  /** NICs of the template (default 1, user networking). */
  nics?: number
}

export interface PoolTemplate {
  /** The template domain (defined, not running). */
  dom: TinyDomain
  image: string
  dir: string
}

/** A template domain on a fresh golden image; removed (domain and files) in `t.after`. */
export async function poolTemplate (t: Scope, o: GoldenOptions = {}): Promise<PoolTemplate> {
  const dir = await sharedDir(t, 'golden')
  const image = join(dir, 'golden.qcow2')
  if (o.overlay === true) {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '16M'])
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', join(dir, 'base.qcow2'), image])
  } else {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M'])
  }
  if (o.snapshot === true) await run('qemu-img', ['snapshot', '-c', 'before', image])
  const nics = Array.from({ length: o.nics ?? 1 }, () => "<interface type='user'><model type='virtio'/></interface>").join('')
  const disk = `<disk type='file' device='disk'><driver name='qemu' type='${o.format ?? 'qcow2'}'/><source file='${image}'/><target dev='vda' bus='virtio'/></disk>`
  const dom = await tinyDomain(t, { start: false, editXml: xml => xml.replace('<devices>', `<devices>${disk}${nics}`) })
  return { dom, image, dir }
}

/** A unique pool name of this test run (clone domains begin with it, so the run's leftover check covers them). */
export function testPoolName (): string {
  return `${TEST_DOMAIN_PREFIX}${randomBytes(3).toString('hex')}`
}

/** The defined domains whose names are clones of `pool` (`<pool>-<slot>-<serial>`). */
export async function poolDomains (pool: string): Promise<string[]> {
  const all = (await virsh('list', '--all', '--name')).split('\n').map(l => l.trim())
  return all.filter(n => new RegExp(`^${pool}-\\d+-[a-z0-9]+$`).test(n))
}

/** The overlay files in `dir` of clones of `pool`. */
export async function poolOverlays (dir: string, pool: string): Promise<string[]> {
  return (await readdir(dir)).filter(n => n.startsWith(`${pool}-`) && n.endsWith('.qcow2'))
}

/** Registers the removal of every clone domain of `pool` in `t.after` (what the system should have removed itself). */
export function removePoolLeftovers (t: Scope, pool: string): void {
  t.after(async () => { for (const name of await poolDomains(pool)) await removeDomain(name) })
}

/** A hooks directory with executables written from `scripts` (name → shell script body). */
export async function hooksDir (t: Scope, scripts: Record<string, string>): Promise<string> {
  const dir = await sharedDir(t, 'hooks')
  for (const [name, body] of Object.entries(scripts)) {
    await writeFile(join(dir, name), `#!/bin/sh\n${body}\n`)
    await chmod(join(dir, name), 0o755)
  }
  return dir
}

/** The SHA-256 of a file (to prove a golden image is never written). */
export async function fileDigest (file: string): Promise<string> {
  const { stdout } = await run('sha256sum', [file])
  return stdout.split(' ')[0] ?? ''
}
