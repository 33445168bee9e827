/** Health, readiness, metrics and the OpenAPI document: open to anyone, no API key. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import type { Ctx } from '../context.js'
import { problem, sendProblem } from '../problem.js'

const Checks = Type.Object({ broker: Type.Boolean(), redis: Type.Boolean(), events: Type.Boolean() })

async function pingRedis (ctx: Ctx): Promise<boolean> {
  let t: NodeJS.Timeout | undefined
  try {
    const ping = ctx.redis.ping().then(r => r === 'PONG')
    const timeout = new Promise<boolean>(resolve => { t = setTimeout(() => resolve(false), 1000) })
    return await Promise.race([ping, timeout])
  } catch { return false } finally { clearTimeout(t) }
}

export function operationRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/healthz', {
      schema: { tags: ['operations'], summary: 'the process is up', security: [], response: { 200: Type.Object({ status: Type.Literal('ok') }) } }
    }, async () => ({ status: 'ok' as const }))

    app.get('/readyz', {
      schema: {
        tags: ['operations'],
        summary: 'ready to serve: connected to RabbitMQ and Redis',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ready'), checks: Checks }), 503: Type.Object({ type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.String(), code: Type.String(), checks: Checks }) }
      }
    }, async (_req, reply) => {
      const checks = { broker: ctx.amqp.connected, redis: await pingRedis(ctx), events: ctx.waiter.ready }
      if (checks.broker && checks.redis && checks.events) return { status: 'ready' as const, checks }
      const down = Object.entries(checks).filter(([, ok]) => !ok).map(([k]) => k)
      return sendProblem(reply, problem(503, 'unavailable', `not ready: ${down.join(', ')} unavailable`, { checks }))
    })

    app.get('/metrics', {
      schema: { tags: ['operations'], summary: 'Prometheus metrics', security: [], produces: ['text/plain'], response: { 200: Type.String() } }
    }, async (_req, reply) => {
      const body = await ctx.metrics.registry.metrics()
      return reply.type(ctx.metrics.registry.contentType).send(body)
    })

    app.get('/openapi.json', {
      schema: { tags: ['operations'], summary: 'this OpenAPI document', security: [], response: { 200: Type.Object({}, { additionalProperties: true }) } }
    }, async (_req, reply) => {
      return reply.type('application/json').send(JSON.stringify(app.swagger()))
    })
  }
}
