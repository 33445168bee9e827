/**
 * What an operator does to a job after the fact: retry one that failed or timed out (a new job, linked to it
 * by `retryOf`), or cancel one still queued (it ends `cancelled`, and the receiver never dispatches it). Used
 * by `POST /v1/jobs/{id}/retry|cancel` and by the dashboard.
 */
import type { FastifyRequest } from 'fastify'
import type { JobParams, JobRecord } from '@porthole/contracts'
import { ConflictError, NotFoundError, UnsupportedError } from '@porthole/contracts/errors'
import { JOB_RETENTION_SECONDS } from '@porthole/shared/store'
import { assertVisible, type Principal } from './auth.js'
import { audit, type Ctx } from './context.js'
import { startJob } from './jobs.js'
import { assertRoom } from './routes/server-jobs.js'

const RETRYABLE_STATES = new Set(['failed', 'timed_out'])

/**
 * Starts the job again as a new job; the old one keeps its record. A job is retried once: retries of it that
 * race (a double click, two operators) or come later all get that one new job (`replayed`); to try again
 * after the new job failed too, retry the new job.
 */
export async function retryJob (ctx: Ctx, req: FastifyRequest, p: Principal, jobId: string): Promise<{ job: JobRecord, replayed: boolean }> {
  const old = assertVisible(p, 'job', await ctx.jobs.get(jobId))
  if (!RETRYABLE_STATES.has(old.state)) throw new ConflictError(`only a failed or timed-out job can be retried; job ${old.id} is ${old.state}`)
  // A console URL belongs to whoever asked for it, shown once: a new console is a new request.
  if (old.kind === 'console') throw new UnsupportedError('a console job is not retried: ask for a new console (POST /v1/servers/{id}/console)')
  const server = await ctx.servers.get(old.serverId)
  if (server === undefined || server.tenantId !== old.tenantId) throw new NotFoundError('server')
  await assertRoom(ctx, server.tenantId, old.kind)
  const params: JobParams = old.kind === 'power' ? { kind: 'power', action: old.action } : { kind: 'status' }
  return await startJob(ctx, req, p, { ...params, server, retryOf: old.id, dedupe: { scope: 'retry', key: old.id, ttlSeconds: JOB_RETENTION_SECONDS } })
}

/** Ends a queued job as `cancelled`; 409 once it has been dispatched (or has ended). */
export async function cancelJob (ctx: Ctx, req: FastifyRequest, p: Principal, jobId: string): Promise<JobRecord> {
  const rec = assertVisible(p, 'job', await ctx.jobs.get(jobId))
  const r = rec.state === 'queued' ? await ctx.jobs.transition(rec.id, 'cancelled', { from: 'queued' }) : { status: 'stale', state: rec.state }
  if (r.status !== 'ok' && r.status !== 'same') throw new ConflictError(`only a queued job can be cancelled; job ${rec.id} is ${r.state}`)
  await audit(ctx, req, p, { action: `job.${rec.kind}.cancel`, result: 'ok', serverId: rec.serverId, jobId: rec.id, tenantId: rec.tenantId })
  const now = await ctx.jobs.get(rec.id)
  if (now === undefined) throw new NotFoundError('job')
  return now
}
