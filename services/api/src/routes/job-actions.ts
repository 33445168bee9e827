/** `POST /v1/jobs/{id}/retry` and `/cancel`. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { JobRecord } from '@porthole/contracts'
import { principal } from '../auth.js'
import type { Ctx } from '../context.js'
import { cancelJob, retryJob } from '../job-actions.js'
import { IdParams, errors } from '../schemas.js'

export function jobActionRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/jobs/:id/retry', {
      schema: {
        tags: ['jobs'],
        summary: 'retry a failed or timed-out job: a new job (its `retryOf` names the old one), 201 with `Location`',
        description: 'Power and status jobs only (a console is asked for again with POST /v1/servers/{id}/console: 422). 409 unless the job is `failed` or `timed_out`. A job is retried once: a repeat (concurrent or later) answers 200 with the job the first retry made; retry that one to try again.',
        params: IdParams,
        response: { 200: JobRecord, 201: JobRecord, ...errors(404, 409, 422) }
      }
    }, async (req, reply) => {
      const { job, replayed } = await retryJob(ctx, req, principal(req), req.params.id)
      return reply.code(replayed ? 200 : 201).header('location', `/v1/jobs/${job.id}`).send(job)
    })

    app.post('/jobs/:id/cancel', {
      schema: {
        tags: ['jobs'],
        summary: 'cancel a queued job: it ends `cancelled` and is never dispatched',
        description: '409 once the job has been dispatched to an agent, or has ended.',
        params: IdParams,
        response: { 200: JobRecord, ...errors(404, 409) }
      }
    }, async (req) => await cancelJob(ctx, req, principal(req), req.params.id))
  }
}
