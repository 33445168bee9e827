/**
 * A clone's domain XML, made from its template's inactive XML: a new name, no UUID (libvirt gives it a fresh
 * one), the first disk on the clone's overlay, one deterministic MAC per NIC, a VNC display of its own on
 * 127.0.0.1 (autoport, no password: loopback only, the gateway is its one client), and Porthole's metadata
 * naming its pool, slot and generation, which reconciliation reads back (libvirt is the truth).
 */
import { poolMac } from '@porthole/contracts'
import { attrs } from '../graphics.js'

/** The XML namespace of Porthole's domain metadata. */
const POOL_METADATA_NS = 'urn:porthole:pool:1'

export interface CloneSpec { name: string, ns: string, pool: string, poolId: number, slot: number, generation: number, overlay: string }

/**
 * The metadata a clone carries (what reconcile reads of every domain): `ns` is the deployment's
 * PORTHOLE_NAMESPACE, so that deployments (or test runs) sharing a libvirt never take each other's clones for orphans.
 */
export interface CloneMetadata { ns: string, pool: string, slot: number, generation: number }

const escapeAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/</g, '&lt;').replace(/"/g, '&quot;')

/** Every `<disk …>…</disk>` element of a domain XML, in order. */
export function disksOf (xml: string): Array<{ whole: string, attrs: Map<string, string>, body: string }> {
  return [...xml.matchAll(/<disk\b([^>]*)>([\s\S]*?)<\/disk>/g)].map(m => ({ whole: m[0], attrs: attrs(m[1] ?? ''), body: m[2] ?? '' }))
}

/** The first disk of device `disk`: its file and its driver's format, or undefined when there is none. */
export function firstDisk (xml: string): { index: number, type: string, file: string | undefined, format: string | undefined, readonly: boolean } | undefined {
  const disks = disksOf(xml)
  const index = disks.findIndex(d => (d.attrs.get('device') ?? 'disk') === 'disk')
  const d = disks[index]
  if (d === undefined) return undefined
  const source = /<source\b([^>]*)\/?>/.exec(d.body)
  const driver = /<driver\b([^>]*)\/?>/.exec(d.body)
  return {
    index,
    type: d.attrs.get('type') ?? 'file',
    file: source === null ? undefined : attrs(source[1] ?? '').get('file'),
    format: driver === null ? undefined : attrs(driver[1] ?? '').get('type'),
    readonly: /<readonly\s*\/>/.test(d.body)
  }
}

/** Porthole's metadata of a domain, or undefined when it has none (a domain that is not a clone). */
export function cloneMetadataOf (xml: string): CloneMetadata | undefined {
  const m = /<(?:[\w-]+:)?clone\b([^>]*xmlns(?::[\w-]+)?=(?:'urn:porthole:pool:1'|"urn:porthole:pool:1")[^>]*)\/?>/.exec(xml)
  if (m === null) return undefined
  const a = attrs(m[1] ?? '')
  const pool = a.get('pool')
  const ns = a.get('ns')
  const slot = Number(a.get('slot'))
  const generation = Number(a.get('generation'))
  if (pool === undefined || ns === undefined || !Number.isInteger(slot) || !Number.isInteger(generation)) return undefined
  return { ns, pool, slot, generation }
}

/** The clone's XML from its template's (inactive) XML. */
export function cloneXml (template: string, c: CloneSpec): { xml: string, macs: string[] } {
  let xml = template
    .replace(/<name>[\s\S]*?<\/name>/, `<name>${escapeAttr(c.name)}</name>`)
    .replace(/\s*<uuid>[\s\S]*?<\/uuid>/, '')
    // A template's own metadata of ours (it cannot be a clone itself, but a copied XML may carry it) goes.
    .replace(/<(?:[\w-]+:)?clone\b[^>]*urn:porthole:pool:1[^>]*\/>/g, '')
  const meta = `<porthole:clone xmlns:porthole='${POOL_METADATA_NS}' ns='${escapeAttr(c.ns)}' pool='${escapeAttr(c.pool)}' slot='${c.slot}' generation='${c.generation}'/>`
  xml = /<metadata>/.test(xml) ? xml.replace(/<metadata>/, `<metadata>${meta}`) : xml.replace(/<\/name>/, `</name><metadata>${meta}</metadata>`)

  // The first disk: on the overlay, as qcow2, with no backing chain named (qemu reads it from the overlay).
  const disk = disksOf(xml).find(d => (d.attrs.get('device') ?? 'disk') === 'disk')
  if (disk !== undefined) {
    let body = disk.body.replace(/\s*<backingStore\b[\s\S]*?(<\/backingStore>|\/>)/g, '')
    body = /<source\b/.test(body) ? body.replace(/<source\b[^>]*?\/>|<source\b[^>]*>[\s\S]*?<\/source>/, `<source file='${escapeAttr(c.overlay)}'/>`) : `<source file='${escapeAttr(c.overlay)}'/>${body}`
    body = /<driver\b/.test(body) ? body.replace(/<driver\b[^>]*\/>/, m => m.replace(/\btype=(['"])[^'"]*\1/, "type='qcow2'")) : `<driver name='qemu' type='qcow2'/>${body}`
    const open = `<disk type='file' device='disk'>`
    xml = xml.replace(disk.whole, `${open}${body}</disk>`)
  }

  // One MAC per NIC: the pool's id, the slot and the NIC's index.
  const macs: string[] = []
  xml = xml.replace(/<interface\b([^>]*)>([\s\S]*?)<\/interface>/g, (_m, attrs: string, body: string) => {
    const mac = poolMac(c.poolId, c.slot, macs.length)
    macs.push(mac)
    return `<interface${attrs}><mac address='${mac}'/>${body.replace(/\s*<mac\b[^>]*\/>/g, '')}</interface>`
  })

  // Its own display, on loopback only: whatever the template had is replaced.
  xml = xml.replace(/\s*<graphics\b[^>]*\/>|\s*<graphics\b[^>]*>[\s\S]*?<\/graphics>/g, '')
  xml = xml.replace(/<\/devices>/, "<graphics type='vnc' autoport='yes' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/></graphics></devices>")
  return { xml, macs }
}
