/**
 * What the pool controller does to the machine: libvirt (through @unraid/libvirt, one URI: POOL_LIBVIRT_URI)
 * and qcow2 files (`qemu-img`, the overlay directory). Every call is bounded by a signal. Removals are
 * idempotent: destroying a domain that is not running, undefining one that is gone and deleting an overlay that
 * is not there all succeed, so a disposal cut off by a crash is simply done again.
 */
import { execFile } from 'node:child_process'
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { DomainGetXMLDescFlags, DomainState } from '@unraid/libvirt'
import { parseCloneName } from '@porthole/contracts'
import { NotFoundError, PortholeError } from '@porthole/contracts/errors'
import { Connections, bounded, classify, isNotValid, lookupDomain, messageOf } from '../libvirt.js'
import { cloneMetadataOf, type CloneMetadata } from './clone-xml.js'

const run = promisify(execFile)

/** A domain that carries Porthole's clone metadata. */
export interface CloneDomain extends CloneMetadata { name: string, running: boolean }

/** What `qemu-img info --output=json` says of an image (the members we read). */
export interface ImageInfo { format: string, 'backing-filename'?: string, snapshots?: unknown[], 'virtual-size'?: number }

/** Whether a domain state is one with a qemu process (anything but shut off or crashed). */
function isActive (state: number): boolean {
  return state !== DomainState.SHUTOFF && state !== DomainState.CRASHED && state !== DomainState.NOSTATE
}

export class CloneHost {
  private readonly conns: Connections

  constructor (readonly uri: string, readonly overlayDir: string, private readonly qemuImg: string) {
    this.conns = new Connections(2)
  }

  private async call<T> (what: string, signal: AbortSignal, fn: (h: Awaited<ReturnType<Connections['get']>>) => Promise<T>, domain?: string): Promise<T> {
    const h = await this.conns.get(this.uri, signal)
    try {
      return await bounded(fn(h), signal, what)
    } catch (err) {
      const e = classify(err, what, this.uri, domain)
      if (e.code === 'connection' || e.code === 'timeout') this.conns.drop(this.uri, h)
      throw e
    }
  }

  /** A domain's inactive XML (its definition), or NotFoundError. */
  async definition (name: string, signal: AbortSignal): Promise<string> {
    return await this.call('read the domain XML', signal, async h => await h.domainGetXMLDesc(await lookupDomain(h, name), DomainGetXMLDescFlags.INACTIVE), name)
  }

  /** Whether a domain is running (active). */
  async isRunning (name: string, signal: AbortSignal): Promise<boolean> {
    return await this.call('read the domain state', signal, async h => isActive((await h.domainGetInfo(await lookupDomain(h, name))).state), name)
  }

  /** Defines and starts a clone from its XML. */
  async defineAndStart (xml: string, name: string, signal: AbortSignal): Promise<void> {
    await this.call('define and start the clone', signal, async h => {
      const dom = await h.domainDefineXML(xml)
      await h.domainCreate(dom)
    }, name)
  }

  /** Destroys (when running) and undefines a domain; nothing to do for one that is gone. */
  async remove (name: string, signal: AbortSignal): Promise<void> {
    await this.call('destroy and undefine the clone', signal, async h => {
      let dom
      try { dom = await lookupDomain(h, name) } catch (err) { if (/not found|no domain/i.test(messageOf(err))) return; throw err }
      try { await h.domainDestroy(dom) } catch (err) { if (!isNotValid(err)) throw err } // not running: fine
      try { await h.domainUndefine(dom) } catch (err) { if (!/not found|no domain/i.test(messageOf(err))) throw err }
    }, name)
  }

  /** Every domain that carries Porthole's clone metadata (whatever its pool); names that cannot be a clone's are not read. */
  async clones (signal: AbortSignal): Promise<CloneDomain[]> {
    return await this.call('list the clones', signal, async h => {
      const out: CloneDomain[] = []
      for (const dom of await h.connectListAllDomains()) {
        const name = await h.domainGetName(dom)
        if (parseCloneName(name) === undefined) continue
        let xml: string
        try { xml = await h.domainGetXMLDesc(dom, DomainGetXMLDescFlags.INACTIVE) } catch { continue } // undefined meanwhile
        const meta = cloneMetadataOf(xml)
        if (meta === undefined) continue // named like a clone, but not ours: never touched
        out.push({ name, ...meta, running: isActive((await h.domainGetInfo(dom).catch(() => ({ state: DomainState.SHUTOFF }))).state) })
      }
      return out
    })
  }

  /** The overlay file of a clone. */
  overlayOf (name: string): string { return join(this.overlayDir, `${name}.qcow2`) }

  /** Creates a clone's overlay on the golden image (which is only ever read). */
  async createOverlay (golden: string, overlay: string, signal: AbortSignal): Promise<void> {
    try {
      await run(this.qemuImg, ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', golden, overlay], { signal, timeout: 60_000 })
    } catch (err) {
      throw new PortholeError('action', `qemu-img could not create the overlay: ${messageOf((err as { stderr?: string }).stderr ?? err)}`, { retryable: false })
    }
  }

  /** `qemu-img info` of an image (read without taking its lock: a running template holds it). */
  async imageInfo (file: string, signal: AbortSignal): Promise<ImageInfo> {
    try {
      const { stdout } = await run(this.qemuImg, ['info', '-U', '--output=json', file], { signal, timeout: 30_000 })
      return JSON.parse(stdout) as ImageInfo
    } catch (err) {
      const why = messageOf((err as { stderr?: string }).stderr ?? err)
      if (/No such file|Could not open/i.test(why)) throw new NotFoundError(`image ${file}`)
      throw new PortholeError('action', `qemu-img could not read ${file}: ${why}`, { retryable: false })
    }
  }

  /** Deletes an overlay; one that is not there is fine. */
  async deleteOverlay (file: string): Promise<void> {
    await rm(file, { force: true })
  }

  /** Overlay files in the directory that are named like a clone's: `<clone name>.qcow2`. */
  async overlays (): Promise<string[]> {
    const names = await readdir(this.overlayDir).catch(() => [] as string[])
    return names.filter(n => n.endsWith('.qcow2') && parseCloneName(n.slice(0, -'.qcow2'.length)) !== undefined).map(n => n.slice(0, -'.qcow2'.length))
  }

  async close (): Promise<void> { await this.conns.closeAll() }
}
