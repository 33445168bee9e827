/**
 * The `kvm` agent: libvirt domains on libvirt URIs that cannot run or reach anything else (`kvmTarget`,
 * checked again here before any libvirt call). Server records carry `connection: {uri, domain}` or
 * `{transport, host, port?, user?, keyFile?, domain}` (domain by name or UUID).
 *
 * The binding (@unraid/libvirt) has create, destroy, shutdown (ACPI), suspend and resume, but neither
 * virDomainReboot nor virDomainReset, so:
 * - reboot = ACPI shutdown, wait for the guest to power off (up to KVM_SHUTDOWN_WAIT_MS, leaving time
 *   before the deadline), then start it again. A guest that ignores ACPI is powered off hard (destroy) and
 *   started, and the result's `detail` says so.
 * - reset = destroy + create: a hard power cycle. The domain gets a new id and a new qemu process, which
 *   a real reset would not do; the guest sees the same thing (a cold boot).
 * Every action is confirmed by reading the domain's state afterwards.
 */
import { DomainGetXMLDescFlags, DomainState, type Hypervisor } from '@unraid/libvirt'
import { kvmTarget, type ConsoleProtocol, type ConsoleTarget, type KvmPolicy, type KvmTarget, type PowerAction, type PowerState, type PowerStatus, type StoredKvmServer } from '@porthole/contracts'
import { ConflictError, ConnectionError, PortholeError, TimeoutError, UnsupportedError, ValidationError } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import type { AgentContext, DriverOf } from '../driver.js'
import { consoleHost, isActiveDomainXml, parseVncDisplay } from './graphics.js'
import { sleep } from '@porthole/shared/async'
import { powerStatus } from '../power.js'
import { Connections, bounded, classify, isNotValid, lookupDomain, type LibvirtDomain } from './libvirt.js'

export interface KvmDriverOptions {
  /** libvirt URI → address the console gateway reaches that host's VNC displays at. */
  consoleHosts: Readonly<Record<string, string>>
  /** How long shutdown and reboot wait for the guest to power off after the ACPI request. */
  shutdownWaitMs: number
  /** How often to read the state while waiting for it to change. */
  pollMs?: number
  /** Connections kept open to each libvirt URI (libvirtd serves 5 calls of one connection at a time). */
  connectionsPerUri?: number
  /** KVM_SSH_KEY_DIR and KVM_ALLOWED_URIS. */
  policy?: KvmPolicy
  log?: Logger
}

/** libvirt's domain state as a Porthole power state. */
export function powerOf (state: number): PowerState {
  switch (state) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
    case DomainState.SHUTDOWN: // shutting down: still on
      return 'on'
    case DomainState.PAUSED:
    case DomainState.PMSUSPENDED:
      return 'paused'
    case DomainState.SHUTOFF:
    case DomainState.CRASHED:
      return 'off'
    default:
      return 'unknown'
  }
}

/** One job's view of its domain: every call bounded by the job's signal and classed on failure. */
class Session {
  constructor (
    readonly h: Hypervisor,
    readonly dom: LibvirtDomain,
    private readonly ctx: Ctx,
    readonly uri: string,
    private readonly domain: string,
    private readonly conns: Connections
  ) {}

  async call<T> (what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await bounded(fn(), this.ctx.signal, what)
    } catch (err) {
      const e = classify(err, what, this.uri, this.domain)
      // A connection that failed, or left a call unanswered until the deadline, is not trusted again.
      if (e instanceof ConnectionError || e instanceof TimeoutError) this.conns.drop(this.uri, this.h)
      throw e
    }
  }

  async power (): Promise<PowerState> {
    const info = await this.call('read the domain state', async () => await this.h.domainGetInfo(this.dom))
    return powerOf(info.state)
  }

  /** Runs a state-changing call; "Requested operation is not valid" (already in that state) is returned as false. */
  async change (what: string, fn: () => Promise<void>): Promise<boolean> {
    try {
      await this.call(what, fn)
      return true
    } catch (err) {
      if (err instanceof ConflictError && isNotValid(err.message)) return false
      throw err
    }
  }

  async create (): Promise<boolean> { return await this.change('start the domain', async () => await this.h.domainCreate(this.dom)) }
  async destroy (): Promise<boolean> { return await this.change('power the domain off', async () => await this.h.domainDestroy(this.dom)) }

  /** Polls until the domain is off; false when `untilMs` (epoch ms) passes first. The deadline aborts. */
  async waitOff (untilMs: number, pollMs: number): Promise<boolean> {
    for (;;) {
      if (await this.power() === 'off') return true
      const left = untilMs - Date.now()
      if (left <= 0) return false
      await sleep(Math.min(pollMs, left), this.ctx.signal)
    }
  }
}

/** A driver call's context: always a kvm server. */
type Ctx = AgentContext<StoredKvmServer>

export class KvmDriver implements DriverOf<'kvm'> {
  readonly type = 'kvm' as const
  private readonly conns: Connections
  private readonly pollMs: number

  constructor (private readonly opts: KvmDriverOptions) {
    this.pollMs = opts.pollMs ?? 250
    this.conns = new Connections(opts.connectionsPerUri ?? 4, opts.policy)
  }

  private async open (ctx: Ctx): Promise<Session> {
    let c: KvmTarget
    try { c = kvmTarget(ctx.server.connection, this.opts.policy) } catch (err) {
      const field = (err as ValidationError).details?.field
      throw new ValidationError(`server ${ctx.server.id} has no valid kvm connection: ${(err as Error).message}`, typeof field === 'string' ? `connection.${field}` : undefined)
    }
    // A cached connection may have died (libvirtd restarted): reopen once and look the domain up again.
    for (let attempt = 0; ; attempt++) {
      const h = await this.conns.get(c.uri, ctx.signal)
      try {
        const dom = await bounded(lookupDomain(h, c.domain), ctx.signal, 'look the domain up')
        return new Session(h, dom, ctx, c.uri, c.domain, this.conns)
      } catch (err) {
        const e = classify(err, 'look the domain up', c.uri, c.domain)
        if (e instanceof ConnectionError || e instanceof TimeoutError) this.conns.drop(c.uri, h)
        if (e instanceof ConnectionError && attempt === 0) continue
        throw e
      }
    }
  }

  /** Reads the state after an action and checks it is the one the action promised. */
  private async confirm (s: Session, action: PowerAction, want: PowerState, extra: { changed?: boolean, detail?: string }): Promise<PowerStatus> {
    const power = await s.power()
    if (power !== want) throw new PortholeError('action', `the VM is ${power} after "${action}" (expected ${want})`, { retryable: true })
    return powerStatus(power, extra)
  }

  async status (ctx: Ctx): Promise<PowerStatus> {
    const s = await this.open(ctx)
    return powerStatus(await s.power())
  }

  async power (ctx: Ctx, action: PowerAction): Promise<PowerStatus> {
    const s = await this.open(ctx)
    const before = await s.power()
    switch (action) {
      case 'on': {
        // Never restarts a running (or paused) domain.
        if (before !== 'off') return powerStatus(before, { changed: false, detail: before === 'paused' ? 'the VM is paused; use resume' : undefined })
        const changed = await s.create()
        return await this.confirm(s, action, 'on', { changed })
      }
      case 'off': {
        if (before === 'off') return powerStatus(before, { changed: false })
        const changed = await s.destroy()
        return await this.confirm(s, action, 'off', { changed })
      }
      case 'shutdown': {
        if (before === 'off') return powerStatus(before, { changed: false })
        if (before === 'paused') throw new ConflictError('the VM is paused and cannot answer an ACPI request; resume it first or use "off"')
        await s.change('send the ACPI shutdown request', async () => await s.h.domainShutdown(s.dom))
        // No hard escalation: "shutdown" asks the guest; "off" is the hard power-off.
        if (!await this.waitOffOrDeadline(s, ctx, Date.now() + this.opts.shutdownWaitMs)) {
          throw new TimeoutError('the guest did not power off after the ACPI request')
        }
        return powerStatus('off', { changed: true })
      }
      case 'reboot': {
        if (before === 'off') throw new ConflictError('the VM is off; use "on" to start it')
        if (before === 'paused') throw new ConflictError('the VM is paused and cannot answer an ACPI request; resume it first or use "reset"')
        // No virDomainReboot in the binding: ACPI shutdown, wait, start again; escalate to a hard power
        // cycle when the guest ignores ACPI, keeping enough time before the deadline to do so.
        await s.change('send the ACPI shutdown request', async () => await s.h.domainShutdown(s.dom))
        const left = ctx.deadline.getTime() - Date.now()
        const escalateAt = Date.now() + Math.max(0, Math.min(this.opts.shutdownWaitMs, left - Math.min(10_000, left / 2)))
        let detail = 'shut down by ACPI and started again'
        if (!await s.waitOff(escalateAt, this.pollMs)) {
          await s.destroy()
          detail = 'the guest ignored the ACPI request: powered off hard and started again'
        }
        await s.create()
        return await this.confirm(s, action, 'on', { changed: true, detail })
      }
      case 'reset': {
        if (before === 'off') throw new ConflictError('the VM is off; use "on" to start it')
        // No virDomainReset in the binding: a hard power cycle (destroy + create).
        await s.destroy()
        await s.create()
        return await this.confirm(s, action, 'on', { changed: true, detail: 'hard reset: powered off and started again' })
      }
      case 'suspend': {
        if (before === 'off') throw new ConflictError('the VM is off; only a running VM can be suspended')
        if (before === 'paused') return powerStatus(before, { changed: false })
        const changed = await s.change('suspend the domain', async () => await s.h.domainSuspend(s.dom))
        return await this.confirm(s, action, 'paused', { changed })
      }
      case 'resume': {
        if (before !== 'paused') return powerStatus(before, { changed: false })
        const changed = await s.change('resume the domain', async () => await s.h.domainResume(s.dom))
        return await this.confirm(s, action, 'on', { changed })
      }
    }
  }

  /** waitOff bounded by the deadline too: false (not an abort) when the deadline comes first. */
  private async waitOffOrDeadline (s: Session, ctx: Ctx, untilMs: number): Promise<boolean> {
    // Stop polling a little before the deadline so that the failure is ours, not the abort's.
    const until = Math.min(untilMs, ctx.deadline.getTime() - Math.min(500, this.pollMs * 2))
    try {
      return await s.waitOff(until, this.pollMs)
    } catch (err) {
      if (err instanceof TimeoutError && ctx.signal.aborted) return false
      throw err
    }
  }

  async consoleTarget (ctx: Ctx, protocol: ConsoleProtocol): Promise<ConsoleTarget> {
    if (protocol === 'serial') throw new UnsupportedError('serial consoles are offered for ipmi servers only')
    // VNC either way: the gateway proxies it directly (vnc) or through guacd (guacamole).
    const s = await this.open(ctx)
    const xml = await s.call('read the domain XML', async () => await s.h.domainGetXMLDesc(s.dom, DomainGetXMLDescFlags.SECURE))
    // libvirt gives a domain an id while it runs (or is paused) and none while it is off: one call, not two.
    if (!isActiveDomainXml(xml)) throw new ConflictError('the VM is off: start it to open its console')
    const vnc = parseVncDisplay(xml)
    const target: ConsoleTarget = { kind: 'vnc', host: consoleHost(vnc.listen, s.uri, this.opts.consoleHosts), port: vnc.port }
    if (vnc.password !== undefined && vnc.password !== '') target.password = vnc.password
    return target
  }

  async close (): Promise<void> {
    await this.conns.closeAll()
  }
}
