/** Jobs (their event stream: routes/events.ts). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { JobKind, JobRecord, JobState } from '@porthole/contracts'
import { assertVisible, principal, tenantScope } from '../auth.js'
import type { Ctx } from '../context.js'
import { takeConsoleUrl } from '../jobs.js'
import { IdParams, errors } from '../schemas.js'

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
  }
}
