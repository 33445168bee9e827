// Over 300 lines: the one owner of every pool's clones (refill, disposal, reconcile); its parts share the in-flight sets that make crash recovery safe.
/**
 * The pool controller: keeps each kiosk pool full of clean clones and destroys every clone after use. It runs in
 * an agents process that serves kvm and has POOL_OVERLAY_DIR (it needs libvirt and the overlay directory), and
 * only while it holds the controller lease, so one process acts at a time; another takes over when the lease runs
 * out. It works from two sources:
 *
 * - the event stream (store/events.ts), for speed: `handed-out` → refill; a pool `changed` → check its
 *   template / reconcile; a console session of a clone `closed` → dispose after POOL_DISCONNECT_GRACE_SECONDS
 *   unless a viewer is back; `revoked` or `expired` → dispose now;
 * - a reconcile every POOL_RECONCILE_SECONDS (and at take-over), for truth: libvirt's domains with Porthole's
 *   metadata, the overlay files and Redis' records are compared, orphans on either side are removed, unfinished
 *   clones and disposals (a crash) are finished, sessions that ended while nobody listened are acted on, and the
 *   pool is refilled to its size.
 *
 * Crash safety: a clone is recorded (`starting`) before anything of it exists; a record `starting` or
 * `disposing` that this process is not working on is a crash's leftover and is disposed; a clone is handed out
 * only by PoolStore.claim (one Lua step) and never returns to `ready`.
 */
import { randomUUID } from 'node:crypto'
import { cloneName, type DisposeReason, type Pool, type PoolClone, type StoredKvmServer } from '@porthole/contracts'
import { brief, type Logger } from '@porthole/shared/logging'
import type { ConsoleSessionStore, EventReader, LeasedRun, PoolStore, ServerStore, StreamEvent } from '@porthole/shared/store'
import { cloneXml } from './clone-xml.js'
import { runHook } from './hooks.js'
import type { CloneHost } from './host.js'
import type { PoolMetrics } from './metrics.js'
import { checkTemplate } from './template.js'

export interface PoolControllerOptions {
  /** PORTHOLE_NAMESPACE: written into every clone's metadata; clones of other namespaces are never touched. */
  ns: string
  hooksDir: string
  hookTimeoutMs: number
  reconcileMs: number
  disconnectGraceMs: number
  claimTimeoutMs: number
  /** Clones of one pool made at once. */
  refillConcurrency: number
  /** Bound of each libvirt or qemu-img step. */
  stepTimeoutMs: number
}

export interface PoolControllerDeps {
  host: CloneHost
  pools: PoolStore
  servers: ServerStore
  sessions: ConsoleSessionStore
  events: EventReader
  /** Runs `work` every POOL_RECONCILE_SECONDS on the one agents process that holds the controller lease (runLeased). */
  leased: (work: () => Promise<void>) => LeasedRun
  metrics: PoolMetrics
  log: Logger
  o: PoolControllerOptions
}

export class PoolController {
  private run: LeasedRun | undefined
  private stopped = false
  /** Clones this process is making or disposing of now (by name): any other `starting`/`disposing` record is a crash's. */
  private readonly making = new Set<string>()
  private readonly disposing = new Map<string, Promise<void>>()
  /** Per pool: a refill or reconcile running, and whether another was asked for meanwhile. */
  private readonly busy = new Map<string, { again: boolean, done: Promise<void> }>()
  /** Disconnect graces running, by clone name. */
  private readonly graces = new Map<string, NodeJS.Timeout>()
  /** Each pool's template XML and golden image, for the generation that was checked. */
  private readonly templates = new Map<string, { generation: number, xml: string, image: string }>()
  private unsubscribe: (() => void) | undefined

  constructor (private readonly d: PoolControllerDeps) {}

  /** True while this process holds the controller lease: only then does it act. */
  private get leader (): boolean { return this.run?.holding === true && !this.stopped }

  async start (): Promise<void> {
    await this.d.events.start()
    this.unsubscribe = this.d.events.subscribe(e => { if (this.leader) void this.onEvent(e) })
    this.run = this.d.leased(async () => await this.reconcileAll())
  }

  /** Every pool reconciled, and clones no pool knows removed. */
  private async reconcileAll (): Promise<void> {
    for (const pool of await this.d.pools.list()) this.reconcileSoon(pool.name)
    await this.orphanDomains()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.unsubscribe?.()
    for (const t of this.graces.values()) clearTimeout(t)
    await Promise.allSettled([...this.busy.values()].map(async b => await b.done))
    await Promise.allSettled([...this.disposing.values()])
    await this.run?.stop()
  }

  private signal (): AbortSignal { return AbortSignal.timeout(this.d.o.stepTimeoutMs) }

  // --- events ---------------------------------------------------------------------------------------------

  private async onEvent (e: StreamEvent): Promise<void> {
    try {
      if (e.type === 'pool') {
        if (e.data.event === 'handed-out' || e.data.event === 'changed' || e.data.event === 'miss') this.reconcileSoon(e.data.pool)
        return
      }
      if (e.type !== 'console') return
      const ev = e.data.event
      if (ev !== 'closed' && ev !== 'connected' && ev !== 'revoked' && ev !== 'expired') return
      const at = await this.d.pools.cloneOfServer(e.data.serverId)
      if (at === undefined) return
      const pool = await this.d.pools.get(at.pool)
      if (pool === undefined) return
      if (ev === 'connected') {
        this.cancelGrace(at.name)
        await this.d.pools.setLeft(pool, at.name, undefined)
      } else if (ev === 'closed') {
        await this.d.pools.setLeft(pool, at.name, e.data.at)
        this.startGrace(pool, at.name, e.data.sessionId)
      } else {
        void this.dispose(pool, at.name, ev)
      }
    } catch (err) {
      this.d.log.warn({ err: brief(err) }, 'pool event not handled; the next reconcile catches up')
    }
  }

  private startGrace (pool: Pool, name: string, sessionId: string): void {
    this.cancelGrace(name)
    this.graces.set(name, setTimeout(() => {
      this.graces.delete(name)
      void (async () => {
        // A viewer that came back (a page reload) keeps the session; the `connected` event may be on its way.
        if ((await this.d.sessions.connected([sessionId]))[0] === true) return
        await this.dispose(pool, name, 'disconnected')
      })().catch((err: unknown) => this.d.log.warn({ err: brief(err), clone: name }, 'disconnect grace not handled; the next reconcile catches up'))
    }, this.d.o.disconnectGraceMs))
  }

  private cancelGrace (name: string): void {
    const t = this.graces.get(name)
    if (t !== undefined) { clearTimeout(t); this.graces.delete(name) }
  }

  // --- reconcile and refill ---------------------------------------------------------------------------------

  /** Reconciles a pool now, or once more after the one running (coalesced). */
  reconcileSoon (name: string): void {
    const b = this.busy.get(name)
    if (b !== undefined) { b.again = true; return }
    const entry = { again: false, done: Promise.resolve() }
    this.busy.set(name, entry)
    entry.done = (async () => {
      do {
        entry.again = false
        try { await this.reconcile(name) } catch (err) { this.d.log.warn({ err: brief(err), pool: name }, 'pool reconcile failed') }
      } while (entry.again && this.leader)
      this.busy.delete(name)
    })()
  }

  private async reconcile (name: string): Promise<void> {
    if (!this.leader) return
    let pool = await this.d.pools.get(name)
    if (pool === undefined) return
    const log = this.d.log.child({ pool: name })
    if (pool.state === 'checking') {
      const v = await checkTemplate(this.d.host, pool, this.d.o.hooksDir, this.signal())
      await this.d.pools.checked(pool, pool.generation, v.ok ? undefined : v.reason, v.ok ? v.image : '')
      if (v.ok) this.templates.set(name, { generation: pool.generation, xml: v.xml, image: v.image })
      log.info({ generation: pool.generation, ok: v.ok, reason: v.ok ? undefined : v.reason }, 'pool template checked')
      pool = await this.d.pools.get(name)
      if (pool === undefined) return
    }
    const clones = await this.d.pools.clones(name)
    const now = Date.now()
    for (const c of clones) {
      const reason = this.staleReason(pool, c, now)
      if (reason !== undefined) { void this.dispose(pool, c.name, reason); continue }
      if (c.state === 'in_use') await this.checkSession(pool, c, now)
    }
    if (pool.state === 'deleting') {
      if ((await this.d.pools.clones(name)).length === 0 && this.disposing.size === 0) {
        await this.d.pools.forget(name)
        log.info('pool deleted: its clones are gone')
      }
      return
    }
    await this.refill(pool)
  }

  /** Why a clone must go now (a crash's leftover, out of date, a claim that never finished), or undefined. */
  private staleReason (pool: Pool, c: PoolClone, now: number): DisposeReason | undefined {
    // One being made here finishes first (its markReady refuses a deleted pool, and it is disposed then).
    if (this.making.has(c.name)) return undefined
    if (pool.state === 'deleting') return 'deleted'
    if (c.state === 'starting') return 'orphan'
    if (c.state === 'disposing' && !this.disposing.has(c.name)) return (c.disposeReason as DisposeReason | undefined) ?? 'orphan'
    if (c.state === 'ready' && (c.slot >= pool.size || (pool.state === 'active' && c.generation < pool.generation))) return 'stale'
    if (c.state === 'claimed' && now - Date.parse(c.claimedAt ?? c.createdAt) > this.d.o.claimTimeoutMs) return 'claim-failed'
    return undefined
  }

  /** A handed-out clone whose session ended (or whose viewer left longer ago than the grace) goes. */
  private async checkSession (pool: Pool, c: PoolClone, now: number): Promise<void> {
    const s = c.sessionId === undefined ? undefined : await this.d.sessions.get(c.sessionId)
    if (s === undefined || s.revokedAt !== undefined) { void this.dispose(pool, c.name, 'revoked'); return }
    if (Date.parse(s.expiresAt) <= now) { void this.dispose(pool, c.name, 'expired'); return }
    if (this.graces.has(c.name)) return
    const connected = (await this.d.sessions.connected([s.id]))[0] === true
    if (connected) return
    // Its viewer left while no controller listened, or it was never opened: the grace, or the idle timeout.
    if (c.leftAt !== undefined && now - Date.parse(c.leftAt) > this.d.o.disconnectGraceMs) void this.dispose(pool, c.name, 'disconnected')
    else if (c.leftAt === undefined && now - Date.parse(c.claimedAt ?? c.createdAt) > pool.idleTimeoutSeconds * 1000) void this.dispose(pool, c.name, 'idle')
  }

  /** Makes clones for the pool's free slots (while it is active). */
  private async refill (pool: Pool): Promise<void> {
    if (pool.state !== 'active') return
    const template = await this.template(pool)
    if (template === undefined) return
    const used = new Set((await this.d.pools.clones(pool.name)).map(c => c.slot))
    const free: number[] = []
    for (let slot = 0; slot < pool.size; slot++) if (!used.has(slot)) free.push(slot)
    for (let i = 0; i < free.length; i += this.d.o.refillConcurrency) {
      const results = await Promise.all(free.slice(i, i + this.d.o.refillConcurrency).map(async slot => await this.makeClone(pool, slot, template)))
      // A failure may have turned the pool failing: no more clones until its template is fixed.
      if (results.includes(false) && (await this.d.pools.get(pool.name))?.state !== 'active') return
    }
  }

  /** The checked template of the pool's generation (read again after a restart: libvirt is the truth). */
  private async template (pool: Pool): Promise<{ xml: string, image: string } | undefined> {
    const t = this.templates.get(pool.name)
    if (t !== undefined && t.generation === pool.generation) return t
    const v = await checkTemplate(this.d.host, pool, this.d.o.hooksDir, this.signal())
    if (!v.ok) {
      await this.d.pools.recordFailure(pool, pool.generation, -1, `template: ${v.reason}`)
      return undefined
    }
    this.templates.set(pool.name, { generation: pool.generation, xml: v.xml, image: v.image })
    return v
  }

  /** Makes one clone in `slot`; false when it failed (recorded as the pool's failure, its leftovers removed). */
  private async makeClone (pool: Pool, slot: number, template: { xml: string, image: string }): Promise<boolean> {
    if (!this.leader) return true
    const name = cloneName(pool.name, slot, await this.d.pools.serial(pool.name))
    const overlay = this.d.host.overlayOf(name)
    const clone: PoolClone = { name, serverId: randomUUID(), pool: pool.name, slot, generation: pool.generation, state: 'starting', overlay, createdAt: new Date().toISOString() }
    const log = this.d.log.child({ pool: pool.name, clone: name, slot })
    const end = this.d.metrics.refill.startTimer({ pool: pool.name })
    this.making.add(name)
    try {
      // Recorded before anything exists: a crash from here on leaves a record that the next reconcile disposes of.
      await this.d.pools.addClone(clone)
      await this.d.host.createOverlay(template.image, overlay, this.signal())
      const { xml, macs } = cloneXml(template.xml, { name, ns: this.d.o.ns, pool: pool.name, poolId: pool.poolId, slot, generation: pool.generation, overlay })
      for (const hook of pool.hooks) await runHook(this.d.o.hooksDir, hook, { pool: pool.name, clone: name, slot, overlay, macs, golden: template.image }, this.d.o.hookTimeoutMs)
      await this.d.host.defineAndStart(xml, name, this.signal())
      const now = new Date().toISOString()
      const server: StoredKvmServer = { id: clone.serverId, tenantId: pool.tenantId, name, agent: 'kvm', connection: { uri: this.d.host.uri, domain: name }, secretPaths: [], createdAt: now, updatedAt: now }
      await this.d.servers.put(server)
      if (!await this.d.pools.markReady(pool, name)) {
        this.making.delete(name)
        void this.dispose(pool, name, 'deleted')
        return true
      }
      end()
      log.info({ macs }, 'clone ready')
      return true
    } catch (err) {
      this.d.metrics.failures.inc({ pool: pool.name })
      const message = (err as Error).message ?? String(err)
      const failures = await this.d.pools.recordFailure(pool, pool.generation, slot, `clone ${name}: ${message}`).catch(() => 0)
      log.warn({ err: brief(err), failures }, 'clone failed')
      this.making.delete(name)
      await this.dispose(pool, name, 'orphan')
      return false
    } finally {
      this.making.delete(name)
    }
  }

  // --- disposal ---------------------------------------------------------------------------------------------

  /** Destroys a clone (domain, definition, overlay, server record, session) once, whoever asks; then refills. */
  dispose (pool: Pool, name: string, reason: DisposeReason): Promise<void> {
    const running = this.disposing.get(name)
    if (running !== undefined) return running
    const p = (async () => {
      const log = this.d.log.child({ pool: pool.name, clone: name, reason })
      try {
        this.cancelGrace(name)
        // Marked first (once): from here the clone can be neither claimed nor bound to a session.
        const was = await this.d.pools.startDisposal(pool, name, reason) ?? await this.d.pools.clone(pool.name, name)
        if (was === undefined) return
        // Every live console of it ends (its viewer's socket closes), also one minted for a hand-out that died.
        for (const s of await this.d.sessions.listLive({ serverId: was.serverId })) if (s.revokedAt === undefined) await this.d.sessions.revoke(s)
        await this.d.host.remove(name, this.signal())
        await this.d.host.deleteOverlay(was.overlay)
        const server = await this.d.servers.get(was.serverId)
        if (server !== undefined) await this.d.servers.delete(server)
        await this.d.pools.removeClone(pool, name, reason)
        this.d.metrics.disposals.inc({ pool: pool.name, reason })
        log.info('clone destroyed')
      } catch (err) {
        log.warn({ err: brief(err) }, 'clone disposal failed; the next reconcile does it again')
      } finally {
        this.disposing.delete(name)
      }
      this.reconcileSoon(pool.name)
    })()
    this.disposing.set(name, p)
    return p
  }

  /** Domains and overlays of clones that no pool's records know (a pool gone, Redis lost, a crash between steps). */
  private async orphanDomains (): Promise<void> {
    // Only this deployment's: another's (a second namespace on the same libvirt) are its controller's business.
    // Listed before the records are read: a clone is recorded before its overlay and domain exist, so one made
    // meanwhile is known by the time we look, never taken for an orphan.
    const domains = (await this.d.host.clones(this.signal())).filter(d => d.ns === this.d.o.ns)
    const files = await this.d.host.overlays()
    const known = new Set<string>()
    for (const p of await this.d.pools.list()) for (const c of await this.d.pools.clones(p.name)) known.add(c.name)
    for (const dom of domains) {
      if (known.has(dom.name) || this.making.has(dom.name) || this.disposing.has(dom.name)) continue
      this.d.log.warn({ clone: dom.name, pool: dom.pool }, 'orphaned clone domain (no record of it); destroying it')
      await this.d.host.remove(dom.name, this.signal()).catch((err: unknown) => this.d.log.warn({ err: brief(err), clone: dom.name }, 'could not destroy an orphaned clone'))
      await this.d.host.deleteOverlay(this.d.host.overlayOf(dom.name))
      this.d.metrics.disposals.inc({ pool: dom.pool, reason: 'orphan' })
    }
    const live = new Set(domains.map(d => d.name))
    for (const name of files) {
      if (known.has(name) || live.has(name) || this.making.has(name) || this.disposing.has(name)) continue
      this.d.log.warn({ clone: name }, 'orphaned overlay (no clone of that name); deleting it')
      await this.d.host.deleteOverlay(this.d.host.overlayOf(name))
    }
  }
}
