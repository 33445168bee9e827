/**
 * libvirt through @unraid/libvirt: one connection per URI, reused and reopened after a failure; every call
 * bounded by the job's AbortSignal (the native calls run on libuv's thread pool and can block for as long as
 * the remote end stays silent); errors classed by their message, since the binding reports code -1.
 */
import { Hypervisor } from '@unraid/libvirt'
import { untilAborted } from '@porthole/shared/async'
import { isUuid, libvirtUriProblem, type KvmPolicy } from '@porthole/contracts'
import { AuthError, ConflictError, ConnectionError, NotFoundError, PortholeError, ValidationError } from '@porthole/contracts/errors'

export type LibvirtDomain = Awaited<ReturnType<Hypervisor['domainLookupByName']>>

const NOT_FOUND = /Domain not found|no domain with matching/i
const NOT_VALID = /Requested operation is not valid/i
const AUTH = /authentication (failed|required)|auth(entication)? cancelled|permission denied|access denied|not authorized|polkit/i
const CONNECTION = /unable to connect|connection (refused|reset|closed)|failed to connect|cannot (recv|write|read) data|end of file while reading|client socket is closed|no connection driver|not connected|broken pipe|network is unreachable|no route to host|name or service not known|could not resolve|host key verification|too large|timed out|keepalive/i
/** libvirt also takes a UUID written without its hyphens. */
const isDomainUuid = (ref: string): boolean => isUuid(ref) || /^[0-9a-f]{32}$/i.test(ref)

/** The message of whatever the binding threw, shortened for a job's failure record. */
export function messageOf (err: unknown): string {
  return String((err as { message?: unknown })?.message ?? err).replace(/\s+/g, ' ').trim().slice(0, 300)
}

/** True for libvirt's "Requested operation is not valid" (e.g. starting a running domain). */
export function isNotValid (err: unknown): boolean {
  return NOT_VALID.test(messageOf(err))
}

/** A URI without a user's password (`qemu+ssh://user:pw@host` is unusual, but never log one). */
export function safeUri (uri: string): string {
  return uri.replace(/\/\/[^@/]*@/, m => m.includes(':') ? '//***@' : m).replace(/\?.*$/, '')
}

/** Turns a binding error into the PortholeError class callers branch on. */
export function classify (err: unknown, what: string, uri: string, domain?: string): PortholeError {
  if (err instanceof PortholeError) return err
  const msg = messageOf(err)
  if (NOT_FOUND.test(msg)) return new NotFoundError(domain === undefined ? `domain on ${safeUri(uri)}` : `domain ${JSON.stringify(domain)} on ${safeUri(uri)}`)
  if (AUTH.test(msg)) return new AuthError(`libvirt at ${safeUri(uri)} refused the credentials: ${msg}`, err)
  if (CONNECTION.test(msg)) return new ConnectionError(`libvirt at ${safeUri(uri)} is not reachable: ${msg}`, err)
  if (NOT_VALID.test(msg)) return new ConflictError(`libvirt refused to ${what}: ${msg}`)
  return new PortholeError('action', `libvirt ${what} failed: ${msg}`, { cause: err, retryable: false })
}

/**
 * Resolves with `p`, or rejects with a TimeoutError when `signal` fires first. The native call keeps running
 * on its thread; its late outcome is ignored.
 */
export async function bounded<T> (p: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return await untilAborted(p, signal, `libvirt did not ${what} by the job's deadline`)
}

/**
 * A few open connections per URI, shared by every job on that URI, used in turn. libvirtd serves at most
 * `max_client_requests` (5 by default) calls of one connection at a time, so with one connection the sixth
 * concurrent job waits for the first five (a destroy takes ~1.5 s here). Each slot opens on first use; a
 * slot whose open failed, or whose connection broke, is forgotten so the next job reopens it.
 */
export class Connections {
  private readonly open = new Map<string, Promise<Hypervisor>>()
  private readonly turn = new Map<string, number>()

  constructor (private readonly perUri = 4, private readonly policy: KvmPolicy = {}) {}

  async get (uri: string, signal: AbortSignal): Promise<Hypervisor> {
    // The API refuses such URIs already; a record written some other way must not run a command here either.
    const problem = libvirtUriProblem(uri, this.policy)
    if (problem !== undefined) throw new ValidationError(`connection.uri: ${problem}`, 'connection.uri')
    const n = this.turn.get(uri) ?? 0
    this.turn.set(uri, (n + 1) % this.perUri)
    const key = `${n}|${uri}`
    let p = this.open.get(key)
    if (p === undefined) {
      const h = new Hypervisor({ uri })
      p = h.connectOpen().then(() => h, (err: unknown) => {
        if (this.open.get(key) === p) this.open.delete(key)
        throw new ConnectionError(`libvirt at ${safeUri(uri)} is not reachable: ${messageOf(err)}`, err)
      })
      this.open.set(key, p)
    }
    return await bounded(p, signal, `connect to ${safeUri(uri)}`)
  }

  /** Forgets (and closes) a connection to `uri` after it failed (`h`, or every one), so the next call reopens it. */
  drop (uri: string, h?: Hypervisor): void {
    for (const [key, p] of this.open) {
      if (!key.endsWith(`|${uri}`)) continue
      void p.then(cur => {
        if (h !== undefined && cur !== h) return
        if (this.open.get(key) === p) this.open.delete(key)
        cur.connectClose().catch(() => {})
      }, () => {})
    }
  }

  async closeAll (): Promise<void> {
    const all = [...this.open.values()]
    this.open.clear()
    await Promise.allSettled(all.map(async p => await (await p).connectClose()))
  }
}

/** Looks a domain up by UUID when the reference is one, else by name. */
export async function lookupDomain (h: Hypervisor, ref: string): Promise<LibvirtDomain> {
  if (isDomainUuid(ref)) {
    try { return await h.domainLookupByUUIDString(ref) } catch (err) { if (!NOT_FOUND.test(messageOf(err))) throw err }
  }
  return await h.domainLookupByName(ref)
}
