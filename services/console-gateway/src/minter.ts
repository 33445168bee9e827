/**
 * Consumes `<ns>.console.mint.interactive`: an agent has found a console target and sealed it for us (transit key,
 * aad = job id). We mint the session: a random URL token (256 bits) of which Redis keeps only the SHA-256, the
 * target re-sealed with the gateway's own CONSOLE_KEY (aad = session id). The URL,
 * `${PUBLIC_GATEWAY_URL}/s/${sessionId}#${token}`, is handed over to the API sealed and once (the URL
 * hand-over: a Redis key the API takes when it answers the requester, see `ConsoleSessionStore.create`); the
 * job's final JobUpdate carries only the session's id, protocol and expiry. The token sits in the URL's fragment: Browsers never send a fragment to a server, so the token
 * never reaches a server log, a proxy log or a Referer header.
 */
import { randomUUID } from 'node:crypto'
import type { AmqpClient, Delivery, Disposition } from '@porthole/shared/amqp'
import { names } from '@porthole/shared/amqp'
import {
  compile, ConsoleMintRequest, ConsoleTarget, consoleUrl, DEFAULT_CONSOLE_MAX_TOTAL_SECONDS, MAX_CONSOLE_TTL_SECONDS,
  type ConsoleResult, type ConsoleSession, type JobUpdate
} from '@porthole/contracts'
import { randomToken, sha256Hex, type SecretBox } from '@porthole/shared/crypto'
import { PortholeError, toFailure, UnsupportedError, type JobFailureLike } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import { urlHandoverAad, type ConsoleSessionStore } from '@porthole/shared/store'

const mintCheck = compile(ConsoleMintRequest, 'ConsoleMintRequest')
const targetCheck = compile(ConsoleTarget, 'ConsoleTarget')

/** How long a minted URL waits for the API to deliver it (a client polling with ?wait=0 has this long). */
const URL_HANDOVER_TTL_SECONDS = 600

export interface MinterDeps {
  amqp: AmqpClient
  sessions: ConsoleSessionStore
  /** Opens targets sealed by agents and seals URLs for the API (CONSOLE_TRANSIT_KEY). */
  transitBox: SecretBox
  /** Seals targets at rest (CONSOLE_KEY). */
  consoleBox: SecretBox
  namespace: string
  publicUrl: string
  /** Whether serial consoles can be served (SOL_BRIDGE_SECRET is set): a session the bridge would refuse is not minted. */
  serial: boolean
  log: Logger
}

export { consoleUrl }

/** The agent's start of the job, which the final update carries (`JobUpdate.startedAt`). */
const startOf = (req: ConsoleMintRequest): { startedAt?: string } => req.startedAt === undefined ? {} : { startedAt: req.startedAt }

export class Minter {
  private readonly n: ReturnType<typeof names>
  private readonly log: Logger

  constructor (private readonly d: MinterDeps) {
    this.n = names(d.namespace)
    this.log = d.log.child({ component: 'minter' })
  }

  async start (): Promise<void> {
    await this.d.amqp.consume(this.n.mintQueue, async (m) => await this.handle(m), { prefetch: 16 })
  }

  async handle (m: Delivery): Promise<Disposition> {
    if (!mintCheck.check(m.body)) {
      const jobId = (m.body as { job?: { id?: unknown } } | undefined)?.job?.id
      this.log.error({ jobId: typeof jobId === 'string' ? jobId : undefined }, 'malformed console mint request; dead-lettering')
      if (typeof jobId === 'string' && /^[0-9a-f-]{36}$/i.test(jobId)) {
        await this.publish({ jobId, state: 'failed', at: new Date().toISOString(), error: { code: 'poison', message: 'malformed console mint request', retryable: false } }).catch(() => {})
      }
      return 'dead'
    }
    const req = m.body
    const job = req.job
    const log = this.log.child({ jobId: job.id, serverId: job.serverId, traceId: job.traceId })
    if (Date.parse(job.deadline) <= Date.now()) {
      // The receiver times the job out; a session nobody can learn the URL of would only linger.
      log.warn('console mint request past its deadline; dropped')
      return 'ack'
    }
    let result: ConsoleResult
    try {
      result = await this.mint(req)
    } catch (err) {
      if (err instanceof PortholeError && err.code === 'unavailable') { log.warn({ err: { message: err.message } }, 'mint deferred: dependency unavailable'); return 'requeue' }
      const failure = toFailure(err)
      log.warn({ code: failure.code, reason: failure.message }, 'console mint failed')
      return await this.fail(job.id, failure, req.startedAt)
    }
    try {
      await this.publish({ jobId: job.id, state: 'succeeded', at: new Date().toISOString(), result, ...startOf(req) })
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'could not publish the console result; requeueing')
      return 'requeue'
    }
    log.info({ sessionId: result.sessionId, protocol: result.protocol, expiresAt: result.expiresAt }, 'console session minted')
    return 'ack'
  }

  private async mint (req: ConsoleMintRequest): Promise<ConsoleResult> {
    const job = req.job
    const params = job.console
    if (job.kind !== 'console' || params === undefined) throw new PortholeError('invalid', 'not a console job', { retryable: false })
    let target: ConsoleTarget
    try {
      target = targetCheck.parse(this.d.transitBox.open(req.target, job.id))
    } catch (err) {
      // Never echo the sealed content: the message says what, not which.
      throw new PortholeError('internal', 'the console target did not open (wrong key, tampered, or not a console target)', { retryable: false, cause: err })
    }
    // vnc and guacamole reach VNC targets; serial reaches an agent's serial-over-LAN bridge.
    if ((params.protocol === 'serial') !== (target.kind === 'sol')) throw new UnsupportedError(`console protocol ${params.protocol} cannot reach a ${target.kind} target`)
    if (params.protocol === 'serial' && !this.d.serial) throw new UnsupportedError('serial consoles are not served by this console gateway (it has no SOL_BRIDGE_SECRET)')
    const id = randomUUID()
    const token = randomToken(32)
    const now = Date.now()
    const ttl = Math.min(params.ttlSeconds, MAX_CONSOLE_TTL_SECONDS)
    const session: ConsoleSession = {
      id,
      serverId: req.server.id,
      tenantId: req.server.tenantId,
      serverName: req.server.name,
      jobId: job.id,
      protocol: params.protocol,
      target: this.d.consoleBox.seal(target, id),
      tokenHash: sha256Hex(token),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ttl * 1000).toISOString(),
      singleUse: params.singleUse,
      ttlSeconds: ttl,
      // Renewals may take it this far (API or, for a renewable session, the console page).
      maxExpiresAt: new Date(now + Math.max(ttl, params.maxTotalSeconds ?? DEFAULT_CONSOLE_MAX_TOTAL_SECONDS) * 1000).toISOString()
    }
    if (params.renewable === true) session.renewable = true
    if (params.idleSeconds !== undefined) session.idleSeconds = params.idleSeconds
    try {
      // The URL carries the token: it goes to the API sealed and once, never into the job record or a message.
      const url = consoleUrl(this.d.publicUrl, id, token)
      await this.d.sessions.create(session, { jobId: job.id, sealedUrl: this.d.transitBox.seal(url, urlHandoverAad(job.id)), ttlSeconds: URL_HANDOVER_TTL_SECONDS })
    } catch (err) {
      throw new PortholeError('unavailable', 'session store unavailable', { cause: err })
    }
    return { sessionId: id, protocol: session.protocol, expiresAt: session.expiresAt }
  }

  private async fail (jobId: string, error: JobFailureLike, startedAt?: string): Promise<Disposition> {
    try {
      await this.publish({ jobId, state: 'failed', at: new Date().toISOString(), error, ...(startedAt === undefined ? {} : { startedAt }) })
      return 'ack'
    } catch {
      return 'requeue'
    }
  }

  private async publish (u: JobUpdate): Promise<void> {
    await this.d.amqp.publish(this.n.resultsExchange, this.n.resultsKeyOf('console'), u)
  }
}
