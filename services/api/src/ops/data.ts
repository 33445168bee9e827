/**
 * What the dashboard shows, read from where it lives: queues from RabbitMQ (passive declares, or the
 * management API when RABBITMQ_MANAGEMENT_URL is set), jobs, sessions, agents and audit from Redis (dead
 * letters: dead-letters.ts).
 */
import { isUuid, type JobKind, type JobRecord, type JobState, type StoredServer } from '@porthole/contracts'
import { brokerNodes, names } from '@porthole/shared/amqp'
import { PortholeError } from '@porthole/contracts/errors'
import { AgentRegistry, keys, type AgentSeen } from '@porthole/shared/store'
import type { Ctx } from '../context.js'

export interface QueueRow {
  queue: string
  /** Ready messages (passive declare's message count). */
  messages: number
  consumers: number
  /** From the management API only. */
  unacked?: number
  publishRate?: number
  deliverRate?: number
}

export interface QueuesView {
  source: 'management' | 'passive'
  queues: QueueRow[]
  /** Jobs created in the last minute and the last 15 minutes (Redis), whatever the source. */
  jobsPerMinute: number
  jobsLast15Minutes: number
  error?: string
}

export async function queuesView (ctx: Ctx, now = Date.now()): Promise<QueuesView> {
  const all = names(ctx.ns).allQueues()
  const k = keys(ctx.ns)
  const [perMinute, per15] = await Promise.all([ctx.redis.zcount(k.jobsAll, now - 60_000, '+inf'), ctx.redis.zcount(k.jobsAll, now - 900_000, '+inf')])
  const base = { jobsPerMinute: perMinute, jobsLast15Minutes: per15 }
  const mgmt = ctx.config.RABBITMQ_MANAGEMENT_URL
  if (mgmt !== undefined) {
    try {
      return { source: 'management', queues: await managementQueues(mgmt, ctx.config.RABBITMQ_URL, all), ...base }
    } catch (err) {
      // Fall through to passive declares, saying why the rates are missing.
      const passive = await ctx.amqp.queueStats(all)
      return { source: 'passive', queues: passive, ...base, error: `management API: ${(err as Error).message}` }
    }
  }
  try {
    return { source: 'passive', queues: await ctx.amqp.queueStats(all), ...base }
  } catch (err) {
    return { source: 'passive', queues: [], ...base, error: (err as Error).message }
  }
}

interface MgmtQueue { name: string, messages_ready?: number, messages_unacknowledged?: number, consumers?: number, message_stats?: { publish_details?: { rate?: number }, deliver_get_details?: { rate?: number } } }

async function managementQueues (mgmtUrl: string, amqpUrl: string, wanted: string[]): Promise<QueueRow[]> {
  const u = new URL(mgmtUrl)
  const auth = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')
  u.username = ''
  u.password = ''
  const vhost = decodeURIComponent(new URL(brokerNodes(amqpUrl)[0] as string).pathname.slice(1)) || '/'
  const res = await fetch(new URL(`api/queues/${encodeURIComponent(vhost)}?columns=name,messages_ready,messages_unacknowledged,consumers,message_stats`, u.href.endsWith('/') ? u.href : u.href + '/'), {
    headers: { authorization: `Basic ${auth}` }, signal: AbortSignal.timeout(3000)
  })
  if (!res.ok) throw new Error(`HTTP ${res.status}`)
  const rows = await res.json() as MgmtQueue[]
  const want = new Set(wanted)
  return rows.filter(q => want.has(q.name)).map(q => {
    const r: QueueRow = { queue: q.name, messages: q.messages_ready ?? 0, consumers: q.consumers ?? 0, unacked: q.messages_unacknowledged ?? 0 }
    const pub = q.message_stats?.publish_details?.rate
    const del = q.message_stats?.deliver_get_details?.rate
    if (pub !== undefined) r.publishRate = pub
    if (del !== undefined) r.deliverRate = del
    return r
  })
}

export interface JobQuery { state?: JobState, kind?: JobKind, agent?: string, tenantId?: string, serverId?: string, q?: string, limit: number }

/** A job as the dashboard lists it: the record, with its server's name and agent type. */
export type OpsJob = JobRecord & { serverName?: string, agent?: string }

/** Reads servers once per call: many jobs share a server. */
export function serverLookup (ctx: Ctx): (id: string) => Promise<StoredServer | undefined> {
  const cache = new Map<string, Promise<StoredServer | undefined>>()
  return async (id) => {
    let p = cache.get(id)
    if (p === undefined) { p = ctx.servers.get(id); cache.set(id, p) }
    return await p
  }
}

export async function withServer (lookup: (id: string) => Promise<StoredServer | undefined>, j: JobRecord): Promise<OpsJob> {
  const s = await lookup(j.serverId)
  return s === undefined ? j : { ...j, serverName: s.name, agent: s.agent }
}

/** Jobs by the dashboard's filters; `q` is a job id (that job alone) or a server id (its jobs). */
export async function findJobs (ctx: Ctx, f: JobQuery): Promise<OpsJob[]> {
  const lookup = serverLookup(ctx)
  let serverId = f.serverId
  if (f.q !== undefined && f.q !== '') {
    const q = f.q.trim()
    if (!isUuid(q)) throw new PortholeError('invalid', 'search: a job id or a server id (a UUID)', { details: { field: 'q' } })
    const job = await ctx.jobs.get(q)
    if (job !== undefined) return [await withServer(lookup, job)]
    serverId = q
  }
  // The agent type is the server's: read more when filtering on it, so that a page still fills.
  const found = await ctx.jobs.list({
    limit: f.agent === undefined ? f.limit : Math.min(2000, f.limit * 10),
    ...(serverId === undefined ? {} : { serverId }),
    ...(f.tenantId === undefined ? {} : { tenantId: f.tenantId }),
    ...(f.state === undefined ? {} : { state: f.state }),
    ...(f.kind === undefined ? {} : { kind: f.kind })
  })
  const out: OpsJob[] = []
  for (const j of found) {
    const row = await withServer(lookup, j)
    if (f.agent !== undefined && row.agent !== f.agent) continue
    out.push(row)
    if (out.length === f.limit) break
  }
  return out
}

export interface AgentsView {
  instances: AgentSeen[]
  /** Per agent type: jobs dispatched or running now (from the job records) and live processes serving it. */
  types: Array<{ type: string, inFlight: number, instances: number }>
}

export async function agentsView (ctx: Ctx): Promise<AgentsView> {
  const instances = await new AgentRegistry(ctx.redis, ctx.ns).list()
  const lookup = serverLookup(ctx)
  const busy = [...await ctx.jobs.list({ state: 'dispatched', limit: 500 }), ...await ctx.jobs.list({ state: 'running', limit: 500 })]
  const inFlight = new Map<string, number>()
  for (const j of busy) {
    const agent = (await lookup(j.serverId))?.agent ?? 'unknown'
    inFlight.set(agent, (inFlight.get(agent) ?? 0) + 1)
  }
  const typeNames = new Set<string>(['kvm', 'ipmi', 'ovirt', ...inFlight.keys()])
  for (const i of instances) for (const t of i.types) typeNames.add(t)
  return {
    instances,
    types: [...typeNames].map(type => ({ type, inFlight: inFlight.get(type) ?? 0, instances: instances.filter(i => i.alive && i.types.includes(type)).length }))
  }
}

/** Kiosk pools with their counts and every clone by slot (operators see the template and hooks too). */
export async function poolsView (ctx: Ctx): Promise<unknown[]> {
  return await Promise.all((await ctx.pools.list()).map(async pool => {
    const clones = (await ctx.pools.clones(pool.name)).sort((a, b) => a.slot - b.slot || a.name.localeCompare(b.name))
    return {
      ...await ctx.pools.view(pool, clones),
      clones: clones.map(c => ({ name: c.name, slot: c.slot, state: c.state, createdAt: c.createdAt, serverId: c.serverId, ...(c.sessionId === undefined ? {} : { sessionId: c.sessionId }) }))
    }
  }))
}
