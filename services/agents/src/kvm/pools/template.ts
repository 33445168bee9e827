/**
 * Checks a pool's template where libvirt is: a defined domain, not running (its image would change under the
 * clones), whose first disk is a qcow2 file without internal snapshots that is not itself an overlay, with no
 * second writable disk (which every clone would share), and hooks that exist. Answers the golden image's path,
 * or a sentence that says what is wrong.
 */
import type { Pool } from '@porthole/contracts'
import { NotFoundError, PortholeError } from '@porthole/contracts/errors'
import { disksOf, firstDisk } from './clone-xml.js'
import { hookProblem } from './hooks.js'
import type { CloneHost } from './host.js'

export type TemplateVerdict = { ok: true, image: string, xml: string } | { ok: false, reason: string }

export async function checkTemplate (host: CloneHost, pool: Pool, hooksDir: string, signal: AbortSignal): Promise<TemplateVerdict> {
  const no = (reason: string): TemplateVerdict => ({ ok: false, reason })
  let xml: string
  try { xml = await host.definition(pool.template, signal) } catch (err) {
    if (err instanceof NotFoundError) return no(`no domain ${JSON.stringify(pool.template)} is defined on ${host.uri}`)
    throw err
  }
  if (await host.isRunning(pool.template, signal)) return no(`the template domain ${pool.template} is running: its image would change under the clones; shut it off`)
  const disk = firstDisk(xml)
  if (disk === undefined) return no(`the template domain ${pool.template} has no disk`)
  if (disk.type !== 'file' || disk.file === undefined) return no(`the first disk of ${pool.template} is not a file (type ${disk.type})`)
  if (disk.format !== 'qcow2') return no(`the first disk of ${pool.template} is not qcow2 (its driver type is ${disk.format ?? 'not set'})`)
  const others = disksOf(xml).filter((d, i) => i !== disk.index && (d.attrs.get('device') ?? 'disk') === 'disk' && !/<readonly\s*\/>/.test(d.body))
  if (others.length > 0) return no(`the template domain ${pool.template} has ${others.length + 1} writable disks; clones are made of the first only, and would share the others`)
  let info
  try { info = await host.imageInfo(disk.file, signal) } catch (err) {
    if (err instanceof NotFoundError) return no(`the first disk of ${pool.template}, ${disk.file}, does not exist or cannot be read`)
    if (err instanceof PortholeError) return no(err.message)
    throw err
  }
  if (info.format !== 'qcow2') return no(`${disk.file} is ${info.format}, not qcow2`)
  if (info['backing-filename'] !== undefined) return no(`${disk.file} is itself an overlay (its backing file is ${info['backing-filename']}): use a flattened image (qemu-img convert -O qcow2)`)
  if ((info.snapshots?.length ?? 0) > 0) return no(`${disk.file} has ${info.snapshots?.length ?? 0} internal snapshot(s): clones would not see the state they expect; remove them (qemu-img snapshot -d) or convert the image`)
  for (const h of pool.hooks) {
    const p = await hookProblem(hooksDir, h)
    if (p !== undefined) return no(p)
  }
  return { ok: true, image: disk.file, xml }
}
