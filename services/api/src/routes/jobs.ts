/** Jobs and the job-event stream (SSE). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { JobKind, JobRecord, JobState, type JobEvent } from '@porthole/contracts'
import { assertVisible, principal, tenantScope } from '../auth.js'
import type { Ctx } from '../context.js'
import { takeConsoleUrl } from '../jobs.js'
import { IdParams, errors } from '../schemas.js'
import { eventView } from '../views.js'

/** Bytes an event stream may have waiting for a slow client before it is dropped. */
const SSE_MAX_BUFFERED = 1024 * 1024

/** What views.ts changes for customers, for the OpenAPI document. */
const CUSTOMER_VIEW = "Customers see `error.message` as a fixed sentence per `error.code` (agents' messages can name internal hosts), and a job another key asked for with that key's role as `requestedBy`."

export function jobRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/jobs/:id', {
      schema: { tags: ['jobs'], summary: 'one job with its state history', description: CUSTOMER_VIEW, params: IdParams, response: { 200: JobRecord, ...errors(404) } }
    }, async (req) => {
      const p = principal(req)
      const rec = assertVisible(p, 'job', await ctx.jobs.get(req.params.id))
      // A console job polled with ?wait=0: its requester gets the URL here, once.
      const url = await takeConsoleUrl(ctx, rec, p)
      if (url !== undefined && rec.kind === 'console' && rec.result !== undefined) rec.result = { ...rec.result, url }
      return rec
    })

    app.get('/jobs', {
      schema: {
        tags: ['jobs'],
        summary: 'recent jobs, newest first (customers: their own)',
        description: CUSTOMER_VIEW,
        querystring: Type.Object({
          serverId: Type.Optional(Type.String({ format: 'uuid' })),
          tenantId: Type.Optional(Type.String({ format: 'uuid' })),
          state: Type.Optional(JobState),
          kind: Type.Optional(JobKind),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 }))
        }, { additionalProperties: false }),
        response: { 200: Type.Array(JobRecord), ...errors() }
      }
    }, async (req) => {
      const p = principal(req)
      const q = req.query
      const scope = tenantScope(p)
      if (scope !== undefined && q.tenantId !== undefined && q.tenantId !== scope) return []
      const tenantId = scope ?? q.tenantId
      return await ctx.jobs.list({
        limit: q.limit ?? 50,
        ...(tenantId === undefined ? {} : { tenantId }),
        ...(q.serverId === undefined ? {} : { serverId: q.serverId }),
        ...(q.state === undefined ? {} : { state: q.state }),
        ...(q.kind === undefined ? {} : { kind: q.kind })
      })
    })

    app.get('/events', {
      schema: {
        tags: ['jobs'],
        summary: 'job events as server-sent events (customers: their own tenant)',
        description: 'Each state change of a job is an `event: job` whose data is a JobEvent. Comment lines (`: heartbeat`) keep the connection alive.',
        produces: ['text/event-stream'],
        querystring: Type.Object({
          serverId: Type.Optional(Type.String({ format: 'uuid' })),
          jobId: Type.Optional(Type.String({ format: 'uuid' }))
        }, { additionalProperties: false }),
        response: { 200: Type.String({ description: 'text/event-stream of JobEvent; `event: end` before the stream ends because its key was deleted or its tenant suspended' }), ...errors(429) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const scope = tenantScope(p)
      const { serverId, jobId } = req.query
      const slot = await ctx.streams.admit(p)
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no'
      })
      res.write(': connected\n\n')
      const send = (e: JobEvent): void => {
        if (scope !== undefined && e.tenantId !== scope) return
        if (serverId !== undefined && e.serverId !== serverId) return
        if (jobId !== undefined && e.jobId !== jobId) return
        // A client that stops reading is dropped rather than buffered without bound; it can reconnect.
        if (res.writableLength > SSE_MAX_BUFFERED) { req.log.info({ buffered: res.writableLength }, 'event stream client too slow; closed'); res.destroy(); return }
        res.write(`event: job\ndata: ${JSON.stringify(eventView(e))}\n\n`)
      }
      const stop = ctx.waiter.feed(send)
      const beat = setInterval(() => { res.write(': heartbeat\n\n'); ctx.streams.renew(res) }, ctx.config.SSE_HEARTBEAT_SECONDS * 1000)
      // Counted per key across replicas, and ended when the key is deleted or its tenant suspended.
      ctx.streams.track(slot, p, res)
      res.once('close', () => { stop(); clearInterval(beat) })
    })

    // Open streams would keep the server from closing.
    app.addHook('preClose', async () => { ctx.streams.endAll() })
  }
}
