/**
 * `GET /v1/events`: job state changes and console session events as server-sent events, read from the event
 * stream (store/events.ts). Each event carries its stream id as the SSE `id:`, so a client that reconnects
 * with `Last-Event-ID` (browsers' EventSource does it by itself) gets every event it missed, then the live ones.
 */
import { once } from 'node:events'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import { poolEventView, type ConsoleEvent } from '@porthole/contracts'
import { ValidationError } from '@porthole/contracts/errors'
import { compareEventIds, isEventId, type StreamEvent } from '@porthole/shared/store'
import { principal, tenantScope } from '../auth.js'
import type { Ctx } from '../context.js'
import { errors } from '../schemas.js'
import { eventView } from '../views.js'

/** What an event stream (this one, the dashboard's) answers a HEAD with, at once: its headers, no stream. */
export const SSE_HEAD = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' }

/** Bytes an event stream may have waiting for a slow client before it is dropped. */
const SSE_MAX_BUFFERED = 1024 * 1024

const DESCRIPTION = [
  'Each job state change is an `event: job` whose data is a JobEvent; each console session event an `event: console` whose data is a ConsoleEvent (opened, connected, closed, expired, revoked); each kiosk pool event an `event: pool` whose data is a PoolEvent.',
  'Every event has an `id:` (its position in the event stream): reconnect with the `Last-Event-ID` header (or `?lastEventId=`) to get every event after it first.',
  'When events after that id have been dropped by the retention (the newest 100 000 are kept) an `event: gap` comes first. Comment lines (`: heartbeat`) keep the connection alive;',
  'an `event: end` comes before the stream ends because its key was deleted or its tenant suspended. Customers see their own tenant only; admins and operators everything, or one tenant with `?tenantId=`.'
].join(' ')

/** Exactly the fields of the ConsoleEvent contract. */
function consoleEventView (e: ConsoleEvent): ConsoleEvent {
  return { sessionId: e.sessionId, tenantId: e.tenantId, serverId: e.serverId, event: e.event, at: e.at }
}

/** Each event's SSE frame, made once for every stream that sends it (the tail hands all the same object). */
const frames = new WeakMap<StreamEvent, string>()
function frameOf (e: StreamEvent): string {
  let f = frames.get(e)
  if (f === undefined) {
    const data = e.type === 'job' ? eventView(e.data) : e.type === 'pool' ? poolEventView(e.data) : consoleEventView(e.data)
    f = `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(data)}\n\n`
    frames.set(e, f)
  }
  return f
}

export function eventRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/events', {
      schema: {
        tags: ['jobs'],
        summary: 'job and console events as server-sent events, resumable (customers: their own tenant)',
        description: DESCRIPTION,
        produces: ['text/event-stream'],
        querystring: Type.Object({
          serverId: Type.Optional(Type.String({ format: 'uuid' })),
          jobId: Type.Optional(Type.String({ format: 'uuid' })),
          tenantId: Type.Optional(Type.String({ format: 'uuid', description: 'admins and operators: one tenant only' })),
          types: Type.Optional(Type.String({ pattern: '^(job|console|pool)(,(job|console|pool)){0,2}$', description: '`job`, `console`, `pool`, comma-separated (default all three)' })),
          lastEventId: Type.Optional(Type.String({ maxLength: 50, description: 'as the Last-Event-ID header, for clients that cannot set headers' }))
        }, { additionalProperties: false }),
        response: { 200: Type.String({ description: 'text/event-stream of JobEvent and ConsoleEvent' }), ...errors(400, 429) }
      }
    }, async (req, reply) => {
      const p = principal(req)
      const scope = tenantScope(p)
      const q = req.query
      // The header is read here rather than declared: browsers' EventSource sends it by itself on a reconnect.
      const header = req.headers['last-event-id']
      const after = (Array.isArray(header) ? header[0] : header) ?? q.lastEventId
      if (after !== undefined && !isEventId(after)) throw new ValidationError('Last-Event-ID must be an event id as sent in an `id:` line (e.g. 1764746400000-0)')
      // A customer naming another tenant sees nothing, as GET /v1/jobs answers [].
      const tenantId = scope ?? q.tenantId
      const foreign = scope !== undefined && q.tenantId !== undefined && q.tenantId !== scope
      const types = new Set((q.types ?? 'job,console,pool').split(','))
      const wanted = (e: StreamEvent): boolean => {
        if (foreign || !types.has(e.type)) return false
        if (tenantId !== undefined && e.data.tenantId !== tenantId) return false
        if (q.serverId !== undefined && e.data.serverId !== q.serverId) return false
        if (q.jobId !== undefined && (e.type !== 'job' || e.data.jobId !== q.jobId)) return false
        return true
      }
      // A HEAD is answered at once with the stream's headers: no stream, no slot.
      if (req.method === 'HEAD') return await reply.headers(SSE_HEAD).send('')
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
      let sent = after ?? ''
      /** Writes an event once (replay and live overlap); false when the client should be waited for. */
      const emit = (e: StreamEvent): boolean => {
        if (sent !== '' && compareEventIds(e.id, sent) <= 0) return true
        sent = e.id
        if (!wanted(e)) return true
        return res.write(frameOf(e))
      }
      let backlog: StreamEvent[] | undefined = after === undefined ? undefined : []
      const stop = ctx.events.subscribe((e) => {
        if (backlog !== undefined) { backlog.push(e); return }
        // A client that stops reading is dropped rather than buffered without bound; it can reconnect.
        if (res.writableLength > SSE_MAX_BUFFERED) { req.log.info({ buffered: res.writableLength }, 'event stream client too slow; closed'); res.destroy(); return }
        emit(e)
      })
      const beat = setInterval(() => { res.write(': heartbeat\n\n'); ctx.streams.renew(res) }, ctx.config.SSE_HEARTBEAT_SECONDS * 1000)
      // Counted per key across replicas, and ended when the key is deleted or its tenant suspended.
      ctx.streams.track(slot, p, res)
      res.once('close', () => { stop(); clearInterval(beat) })
      if (after === undefined) return
      // Resuming: what is stored after the client's id first (at the client's pace), then what arrived meanwhile.
      try {
        if (await ctx.events.lostAfter(after)) res.write(`event: gap\ndata: ${JSON.stringify({ reason: 'events after Last-Event-ID were dropped by the retention' })}\n\n`)
        for await (const e of ctx.events.replay(after)) {
          if (res.destroyed || res.writableEnded) break
          if (!emit(e)) await Promise.race([once(res, 'drain'), once(res, 'close')])
        }
      } catch (err) {
        req.log.warn({ err: { message: (err as Error).message } }, 'event stream replay failed; closed')
        res.destroy()
      }
      const pending = backlog ?? []
      backlog = undefined
      for (const e of pending) emit(e)
    })

    // Open streams would keep the server from closing.
    app.addHook('preClose', async () => { ctx.streams.endAll() })
  }
}
