/**
 * The peer of a kiosk pool's refill, for benchmarks: one clone made by hand, as the scripts pools replace did —
 * an overlay on the golden image (`qemu-img create -b`), a define from the template's XML with a new name
 * (and no UUID: libvirt makes one), a start — timed step by step, and removed by the scope's clean-up.
 */
import { execFile } from 'node:child_process'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Scope } from './index.js'
import { removeDomain, testDomainName, virsh } from './libvirt.js'
import type { PoolTemplate } from './pools.js'

const run = promisify(execFile)

export interface BareClone { name: string, overlay: string, overlayMs: number, defineMs: number, startMs: number, totalMs: number }

/** A clone of `t` made by hand in `dir` (default: the template's own directory). */
export async function bareClone (scope: Scope, t: PoolTemplate, dir = t.dir): Promise<BareClone> {
  const name = testDomainName()
  const overlay = join(dir, `${name}.qcow2`)
  const xmlFile = join(dir, `${name}.xml`)
  scope.after(async () => { await removeDomain(name); await rm(overlay, { force: true }) })
  const xml = (await virsh('dumpxml', t.dom.name))
    .replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`)
    .replace(/<uuid>[^<]*<\/uuid>/, '')
    .replace(/<mac address='[^']*'\/>/g, '')
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
