/**
 * A kiosk pool's template for tests and benchmarks: a small qcow2 golden image made with `qemu-img` (empty: a
 * diskless boot is fine, the BIOS shows its text screen) in a directory of its own that QEMU can reach, and a
 * defined (not started) tiny domain whose first disk it is. Both, and anything the test cloned into the
 * directory, are removed by the scope's clean-up. `bareClone` is the peer of a pool's refill: what a script
 * does by hand — an overlay on the golden image, a define from the template's XML, a start — timed step by step.
 */
import { execFile } from 'node:child_process'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Scope } from './index.js'
import { removeDomain, testDomainName, tinyDomain, virsh } from './libvirt.js'

const run = promisify(execFile)

export interface GoldenTemplate {
  /** The template domain's name (defined, shut off). */
  name: string
  /** The golden image's path. */
  image: string
  /** The directory the image is in; overlays may go here too (removed with it). */
  dir: string
}

export async function goldenTemplate (scope: Scope, o: { sizeMiB?: number } = {}): Promise<GoldenTemplate> {
  const dir = await mkdtemp(join(tmpdir(), 'porthole-golden-'))
  scope.after(async () => { await rm(dir, { recursive: true, force: true }) })
  // QEMU runs as its own user: it must be able to walk into the directory.
  await chmod(dir, 0o755)
  const image = join(dir, 'golden.qcow2')
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', image, `${o.sizeMiB ?? 16}M`], { timeout: 30_000 })
  const dom = await tinyDomain(scope, { start: false, editXml: xml => xml.replace('<devices>', `<devices>${diskXml(image)}`) })
  return { name: dom.name, image, dir }
}

function diskXml (file: string): string {
  return `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${file}'/><target dev='vda' bus='virtio'/></disk>`
}

export interface BareClone { name: string, overlay: string, overlayMs: number, defineMs: number, startMs: number, totalMs: number }

/**
 * One clone made by hand, as the scripts a pool replaces did: `qemu-img create -b golden`, `virsh define` of the
 * template's XML with a new name (and no UUID: libvirt makes one), `virsh start`. Removed by the scope's clean-up.
 */
export async function bareClone (scope: Scope, t: GoldenTemplate): Promise<BareClone> {
  const name = testDomainName()
  const overlay = join(t.dir, `${name}.qcow2`)
  const xmlFile = join(t.dir, `${name}.xml`)
  scope.after(async () => { await removeDomain(name); await rm(overlay, { force: true }) })
  const xml = (await virsh('dumpxml', t.name))
    .replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`)
    .replace(/<uuid>[^<]*<\/uuid>/, '')
    .replace(/<source file='[^']*'/, `<source file='${overlay}'`)
  await writeFile(xmlFile, xml)
  const t0 = performance.now()
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', t.image, '-F', 'qcow2', overlay], { timeout: 30_000 })
  const t1 = performance.now()
  await virsh('define', xmlFile)
  const t2 = performance.now()
  await virsh('start', name)
  const t3 = performance.now()
  await rm(xmlFile, { force: true })
  return { name, overlay, overlayMs: t1 - t0, defineMs: t2 - t1, startMs: t3 - t2, totalMs: t3 - t0 }
}
