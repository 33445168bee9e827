/** Power, status and console: each a job published to the receiver, optionally waited for. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import {
  ConsoleGrant, ConsoleProtocol, JobRecord, MAX_CONSOLE_TTL_SECONDS, PowerAction, PowerStatus, isTerminal, type Job, type JobKind
} from '@porthole/contracts'
import { assertVisible, principal } from '../auth.js'
import type { Ctx } from '../context.js'
import { startJob, takeConsoleUrl } from '../jobs.js'
import type { JobWatch } from '../waiter.js'
import { ConflictError } from '@porthole/contracts/errors'
import { TenantSlots, keys } from '@porthole/shared/store'
import { admitConsole, limitError } from '../limits.js'
import { jobFailureError } from '../problem.js'
import { IdParams, errors } from '../schemas.js'

const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7e]+$', description: 'a repeat with the same key (same API key, within 24 h) returns the first job' }))
})

const DEFAULT_WAIT = { power: 0, status: 10, console: 10 } as const

/**
 * Refuses a job while its tenant already has TENANT_MAX_QUEUED jobs of its lane parked by the receivers
 * (waiting for a dispatch slot): they would only wait longer, and hold Redis and the API's waiters meanwhile.
 */
export async function assertRoom (ctx: Ctx, tenantId: string, kind: JobKind): Promise<void> {
  const max = ctx.config.TENANT_MAX_QUEUED
  const parked = await TenantSlots.parked(ctx.redis, ctx.ns, tenantId, kind)
  if (parked < max) return
  throw limitError('jobs_queued_per_tenant', `this tenant already has ${parked} ${kind === 'power' ? 'power' : 'status and console'} jobs waiting for dispatch`, { max, setting: 'TENANT_MAX_QUEUED', retryAfter: 1 })
}

/** A repeat of an Idempotency-Key gets its first job, never a refusal for a quota: quotas count new jobs only. */
async function isReplay (ctx: Ctx, principalId: string, key: string | undefined): Promise<boolean> {
  return key !== undefined && await ctx.redis.exists(keys(ctx.ns).idempotency(principalId, key)) === 1
}

export function serverJobRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  const max = ctx.config.MAX_WAIT_SECONDS
  const waitQuery = (def: number): ReturnType<typeof Type.Object> => Type.Object({
    wait: Type.Optional(Type.Integer({ minimum: 0, maximum: max, description: `seconds to wait for the job to finish (default ${Math.min(def, max)}, at most ${max})` }))
  }, { additionalProperties: false })
  const waitMs = (q: { wait?: number }, def: number): number => (q.wait ?? Math.min(def, max)) * 1000

  return async (app) => {
    app.post('/servers/:id/power', {
      schema: {
        tags: ['jobs'],
        summary: 'power action: on, off, shutdown, reboot, reset, suspend, resume',
        description: 'Answers 202 with the job and `Location: /v1/jobs/{id}`. With `?wait=N` it waits up to N seconds for the job to end and answers 200 with the finished job (whether it succeeded or failed), or 202 if it is still running.',
        params: IdParams,
        querystring: waitQuery(DEFAULT_WAIT.power),
        headers: IdempotencyHeaders,
        body: Type.Object({ action: PowerAction }, { additionalProperties: false }),
        response: { 200: JobRecord, 202: JobRecord, ...errors(404, 429) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const server = assertVisible(p, 'server', await ctx.servers.get(req.params.id))
      if (!await isReplay(ctx, p.id, req.headers['idempotency-key'])) await assertRoom(ctx, server.tenantId, 'power')
      const ms = waitMs(req.query, DEFAULT_WAIT.power)
      const { job, replayed, watch } = await startJob(ctx, req, p, { kind: 'power', server, action: req.body.action, idempotencyKey: req.headers['idempotency-key'], watch: ms > 0 })
      if (replayed) reply.header('idempotent-replayed', 'true')
      if (ms === 0) return reply.code(202).header('location', `/v1/jobs/${job.id}`).send(job)
      const rec = (await waitJob(ctx, job.id, ms, reply.raw, watch)) ?? job
      if (isTerminal(rec.state)) return reply.code(200).header('location', `/v1/jobs/${rec.id}`).send(rec)
      return reply.code(202).header('location', `/v1/jobs/${rec.id}`).send(rec)
    })

    app.get('/servers/:id/status', {
      schema: {
        tags: ['jobs'],
        summary: "the server's power state, asked of its hypervisor, BMC or engine",
        description: 'Waits (default 10 s) for the status job; 202 with the job if it has not finished by then.',
        params: IdParams,
        querystring: waitQuery(DEFAULT_WAIT.status),
        response: { 200: PowerStatus, 202: JobRecord, ...errors(404, 409, 422, 429, 502, 504) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const server = assertVisible(p, 'server', await ctx.servers.get(req.params.id))
      await assertRoom(ctx, server.tenantId, 'status')
      const ms = waitMs(req.query, DEFAULT_WAIT.status)
      const { job, watch } = await startJob(ctx, req, p, { kind: 'status', server, watch: ms > 0 })
      // ?wait=0 asks for the job to poll, whatever state it has reached already
      if (ms === 0) return reply.code(202).header('location', `/v1/jobs/${job.id}`).send(job)
      const rec = (await waitJob(ctx, job.id, ms, reply.raw, watch)) ?? job
      if (rec.state === 'succeeded' && rec.kind === 'status' && rec.result !== undefined) return rec.result
      if (isTerminal(rec.state)) throw jobFailureError(rec.id, rec.state, rec.error)
      return reply.code(202).header('location', `/v1/jobs/${rec.id}`).send(rec)
    })

    app.post('/servers/:id/console', {
      preValidation: async (req) => { if (req.body === undefined || req.body === null) req.body = {} },
      schema: {
        tags: ['console'],
        summary: 'a console URL in one call',
        description: 'Waits (default 10 s) for the console job and answers 201 with the URL (`Location` names the session). `?wait=0` answers 202 with the job to poll instead. The URL carries the only copy of the token. 429 (`limit`: console_sessions_per_server or console_sessions_per_tenant) when the server or its tenant has as many live consoles as allowed; 409 while the tenant is suspended.',
        params: IdParams,
        querystring: waitQuery(DEFAULT_WAIT.console),
        headers: IdempotencyHeaders,
        body: Type.Object({
          protocol: Type.Optional(ConsoleProtocol),
          ttlSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: MAX_CONSOLE_TTL_SECONDS, description: `lifetime of the URL and session (default and at most ${MAX_CONSOLE_TTL_SECONDS})` })),
          singleUse: Type.Optional(Type.Boolean({ description: 'the URL opens once' })),
          renewable: Type.Optional(Type.Boolean({ description: 'the console page may renew the session itself in its last five minutes, up to CONSOLE_MAX_TOTAL_SECONDS in all' }))
        }, { additionalProperties: false }),
        response: { 201: ConsoleGrant, 202: JobRecord, ...errors(404, 409, 422, 429, 502, 504) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const server = assertVisible(p, 'server', await ctx.servers.get(req.params.id))
      const b = req.body
      // Quotas before any job exists (the console slots with the job's id and deadline, just before it is stored).
      const replay = await isReplay(ctx, p.id, req.headers['idempotency-key'])
      if (!replay) await assertRoom(ctx, server.tenantId, 'console')
      const ms = waitMs(req.query, DEFAULT_WAIT.console)
      const { job, replayed, watch } = await startJob(ctx, req, p, {
        kind: 'console',
        watch: ms > 0,
        server,
        ...(replay ? {} : { admit: async (j: Job) => { await admitConsole(ctx, server, j) } }),
        console: { protocol: b.protocol ?? 'vnc', ttlSeconds: b.ttlSeconds ?? MAX_CONSOLE_TTL_SECONDS, singleUse: b.singleUse ?? false, renewable: b.renewable ?? false, maxTotalSeconds: ctx.config.CONSOLE_MAX_TOTAL_SECONDS },
        idempotencyKey: req.headers['idempotency-key']
      })
      if (replayed) reply.header('idempotent-replayed', 'true')
      reply.header('cache-control', 'no-store')
      if (ms === 0) return reply.code(202).header('location', `/v1/jobs/${job.id}`).send(job)
      const rec = (await waitJob(ctx, job.id, ms, reply.raw, watch)) ?? job
      if (rec.state === 'succeeded' && rec.kind === 'console' && rec.result !== undefined) {
        // The tenant may have been suspended while this job ran, after the suspension's sweep of sessions: 409.
        const url = await takeConsoleUrl(ctx, rec, p, { refuseSuspended: true })
        if (url === undefined) throw new ConflictError('the URL of this console was delivered already (it is shown once); ask for a new console')
        const grant: ConsoleGrant = { sessionId: rec.result.sessionId, url, protocol: rec.result.protocol, expiresAt: rec.result.expiresAt }
        return reply.code(201).header('location', `/v1/console-sessions/${rec.result.sessionId}`).send(grant)
      }
      if (isTerminal(rec.state)) throw jobFailureError(rec.id, rec.state, rec.error)
      return reply.code(202).header('location', `/v1/jobs/${rec.id}`).send(rec)
    })
  }
}

/**
 * Waits for the job, giving up early when the client goes away (the response closes before we answer);
 * through `watch` when it was listened for since its publish (a replayed job was not: it is read first).
 */
async function waitJob (ctx: Ctx, jobId: string, ms: number, res: NodeJS.EventEmitter, watch?: JobWatch): Promise<JobRecord | undefined> {
  const ac = new AbortController()
  const onClose = (): void => ac.abort()
  res.once('close', onClose)
  try {
    return watch !== undefined ? await watch.wait(ms, ac.signal) : await ctx.waiter.wait(jobId, ms, ac.signal)
  } finally {
    res.removeListener('close', onClose)
  }
}
