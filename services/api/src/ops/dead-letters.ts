/**
 * The dashboard's dead letters, read from the dead-letter queues without taking them: a listing takes each
 * message unacked and closes its channel, which puts every one back. Two rules make the listing stable while
 * other listings, replays and new dead letters come and go:
 * - one listing or replay at a time per namespace (a lock in Redis, for every API replica): a listing holds
 *   the messages it reads until it closes, so two at once would each miss what the other holds;
 * - the order is the time each message was dead-lettered (RabbitMQ's `x-death` time, to the second; within
 *   a second by message id), oldest first, across both lanes, rather than the queue's order: a quorum queue
 *   puts messages given back behind the others, so its order changes with every partial read.
 */
import { isUuid } from '@porthole/contracts'
import { names } from '@porthole/shared/amqp'
import { keys, Lease } from '@porthole/shared/store'
import { PortholeError, NotFoundError, UnavailableError } from '@porthole/contracts/errors'
import type { Ctx } from '../context.js'

export interface DeadLetter {
  /** `dead` (power lane) or `dead.interactive`. */
  lane: 'dead' | 'dead.interactive'
  messageId: string
  /** When it was dead-lettered (RabbitMQ's `x-death` time, to the second). */
  deadAt?: string
  /** The queue it was dead-lettered from: where a replay sends it. */
  originalQueue?: string
  reason?: string
  deaths?: number
  jobId?: string
  kind?: string
  serverId?: string
  tenantId?: string
  action?: string
  /** What the message is: a job for the receiver, an agent request, a job update, or unknown. */
  type: string
  jobState?: string
}

/** Messages read from each lane for a listing (then sorted, then cut to the listing's limit). */
export const DEAD_LETTER_SCAN = 1000

function deadQueueOf (ctx: Ctx, lane: DeadLetter['lane']): string {
  const n = names(ctx.ns)
  return lane === 'dead' ? n.deadQueue : n.deadInteractiveQueue
}

interface RawMessage { content: Buffer, properties: { messageId?: unknown, headers?: Record<string, unknown> } }
interface Death { count?: number, queue?: string, reason?: string, time?: unknown }

/** An AMQP timestamp as amqplib decodes it in a header table (seconds), as epoch milliseconds. */
function timeOf (t: unknown): number | undefined {
  const v = typeof t === 'object' && t !== null && 'value' in t ? (t as { value: unknown }).value : t
  return typeof v === 'number' && Number.isFinite(v) ? v * 1000 : undefined
}

/** What a dead letter says about itself, without its body (an agent request carries sealed server secrets). */
function describe (lane: DeadLetter['lane'], m: RawMessage): DeadLetter {
  const h = m.properties.headers ?? {}
  const deaths = Array.isArray(h['x-death']) ? h['x-death'] as Death[] : []
  const d: DeadLetter = { lane, messageId: typeof m.properties.messageId === 'string' ? m.properties.messageId : '', type: 'unknown' }
  // x-death lists the newest death first: the one that brought it to the dead-letter queue.
  const at = timeOf(deaths[0]?.time)
  if (at !== undefined) d.deadAt = new Date(at).toISOString()
  const orig = typeof h['x-first-death-queue'] === 'string' ? h['x-first-death-queue'] : deaths.at(-1)?.queue
  if (typeof orig === 'string') d.originalQueue = orig
  const reason = typeof h['x-first-death-reason'] === 'string' ? h['x-first-death-reason'] : deaths.at(-1)?.reason
  if (typeof reason === 'string') d.reason = reason
  const count = deaths.reduce((a, x) => a + (typeof x.count === 'number' ? x.count : 0), 0)
  if (count > 0) d.deaths = count
  let body: Record<string, unknown> | undefined
  try { body = JSON.parse(m.content.toString('utf8')) as Record<string, unknown> } catch { /* not JSON */ }
  const job = (typeof body?.job === 'object' && body.job !== null ? body.job : body) as Record<string, unknown> | undefined
  if (typeof body?.job === 'object') d.type = 'agent request'
  else if (typeof body?.jobId === 'string') { d.type = 'job update'; d.jobId = body.jobId }
  else if (typeof job?.kind === 'string') d.type = 'job'
  const str = (v: unknown): string | undefined => typeof v === 'string' ? v.slice(0, 100) : undefined
  if (d.jobId === undefined && str(job?.id) !== undefined) d.jobId = str(job?.id)
  for (const f of ['kind', 'serverId', 'tenantId', 'action'] as const) { const v = str(job?.[f]); if (v !== undefined) d[f] = v }
  return d
}

/** Oldest first by the time of death; within a second (or without one) by lane, then message id. */
export function byDeath (a: DeadLetter, b: DeadLetter): number {
  const ta = a.deadAt ?? ''
  const tb = b.deadAt ?? ''
  if (ta !== tb) return ta < tb ? -1 : 1
  if (a.lane !== b.lane) return a.lane < b.lane ? -1 : 1
  return a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0
}

const LOCK_MS = 30_000
const LOCK_WAIT_MS = 15_000

/** Runs `fn` holding the namespace's dead-letter lease (waiting up to 15 s for it; 503 beyond). */
async function exclusively<T> (ctx: Ctx, fn: () => Promise<T>): Promise<T> {
  const lease = new Lease(ctx.redis, keys(ctx.ns).lease('ops.dead-letters'), LOCK_MS)
  const giveUp = Date.now() + LOCK_WAIT_MS
  for (let wait = 5; !await lease.acquire(); wait = Math.min(100, wait * 2)) {
    if (Date.now() > giveUp) throw new UnavailableError('another listing or replay of the dead letters is under way; try again shortly')
    await new Promise(resolve => setTimeout(resolve, wait))
  }
  try {
    return await fn()
  } finally {
    await lease.release().catch(() => false)
  }
}

/**
 * Up to `limit` dead letters, oldest first (see above) across both lanes; they stay in their queues. Each
 * lane is read up to DEAD_LETTER_SCAN messages.
 */
export async function deadLetters (ctx: Ctx, limit = 100): Promise<DeadLetter[]> {
  const out = await exclusively(ctx, async () => {
    const read: DeadLetter[] = []
    const ch = await ctx.amqp.rawChannel()
    try {
      for (const lane of ['dead', 'dead.interactive'] as const) {
        for (let i = 0; i < DEAD_LETTER_SCAN; i++) {
          const m = await ch.get(deadQueueOf(ctx, lane), { noAck: false })
          if (m === false) break
          read.push(describe(lane, m))
        }
      }
    } finally {
      // Closing with the messages unacked puts every one back.
      await ch.close().catch(() => {})
    }
    return read
  })
  const listed = out.sort(byDeath).slice(0, limit)
  const jobs = await ctx.jobs.getMany([...new Set(listed.map(d => d.jobId).filter((id): id is string => isUuid(id)))])
  const state = new Map(jobs.map(j => [j.id, j.state]))
  for (const d of listed) { const s = d.jobId === undefined ? undefined : state.get(d.jobId); if (s !== undefined) d.jobState = s }
  return listed
}

/**
 * Sends one dead letter back to the queue it was dead-lettered from (a confirmed publish), then removes it
 * from the dead-letter queue. Its job's record is not touched: a job the receiver already ended stays ended
 * (the receiver skips it); retry a job to run it again.
 */
export async function replayDeadLetter (ctx: Ctx, lane: DeadLetter['lane'], messageId: string): Promise<DeadLetter> {
  return await exclusively(ctx, async () => {
    const ch = await ctx.amqp.rawChannel()
    try {
      for (let i = 0; i < DEAD_LETTER_SCAN; i++) {
        const m = await ch.get(deadQueueOf(ctx, lane), { noAck: false })
        if (m === false) break
        if (m.properties.messageId !== messageId) continue
        const d = describe(lane, m)
        if (d.originalQueue === undefined) throw new PortholeError('conflict', 'this dead letter does not say which queue it came from')
        if (!names(ctx.ns).allQueues().includes(d.originalQueue)) throw new PortholeError('conflict', `this dead letter came from ${d.originalQueue}, not a queue of this namespace`)
        let body: unknown
        try { body = JSON.parse(m.content.toString('utf8')) } catch { throw new PortholeError('conflict', 'this dead letter is not JSON: it cannot be replayed') }
        await ctx.amqp.publish('', d.originalQueue, body, { messageId })
        ch.ack(m)
        return d
      }
    } finally {
      await ch.close().catch(() => {})
    }
    throw new NotFoundError('dead letter')
  })
}
