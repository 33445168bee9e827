/**
 * Webhooks and their deliveries in Redis. A webhook's secret is stored sealed (bound to the webhook's id),
 * as server credentials are. Deliveries are made from the event stream: a consumer group (`webhooks`) hands
 * each event to one API replica, whose `fanOut` records one delivery per matching webhook and acknowledges
 * the event in the same Lua step (a replay after a crash adds nothing twice). A pending delivery waits in
 * `webhook:due` scored by when its next attempt is due; `claim` takes due ones under a lease (the score
 * moves past the attempt's timeout), so that exactly one replica attempts a delivery at a time, and only the
 * holder of the lease can record its outcome.
 */
import type { Redis } from 'ioredis'
import type { Sealed } from '@porthole/contracts'
import type { DeliveryAttempt, Webhook, WebhookDelivery } from '@porthole/contracts'
import { keys as keysOf, type Keys } from './redis.js'

/** A webhook as stored: its secret sealed (aad `webhook:<id>`). */
export interface StoredWebhook extends Webhook { secret: Sealed }

/** A delivery as stored: the body signed and sent, the same for every attempt. */
export interface StoredDelivery extends WebhookDelivery { tenantId: string, body: string }

/** The consumer group of the event stream that webhook deliveries are made from. */
export const WEBHOOK_GROUP = 'webhooks'
/** Deliveries listed per webhook (the newest); records live two days past their last change. */
export const DELIVERIES_KEPT = 1000
const DELIVERY_TTL_SECONDS = 2 * 86400

/** The additional authenticated data a webhook's secret is sealed with. */
export function webhookAad (id: string): string { return `webhook:${id}` }

// KEYS: webhook:due, the event stream, then each event's tenant webhook set, in the events' order. ARGV: now
// ms, webhook key prefix, delivery key prefix, deliveries-list key prefix, kept, ttl s, group, createdAt iso,
// pending-set key prefix, then per event its id, type and body.
// One delivery per webhook of the event's tenant that is enabled and asks for the type, then one XACK of the
// batch: all or nothing. A batch (what one XREADGROUP read) is one call, not one per event: most events have no
// webhook to go to, and a call each was the API's most frequent Redis command (several per job).
const FAN_OUT = `
local n = 0
local ids = {}
local members = {}
for i = 1, #KEYS - 2 do
  local at = 9 + (i - 1) * 3
  local eventId, eventType, body = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  ids[#ids + 1] = eventId
  local set = KEYS[i + 2]
  if members[set] == nil then members[set] = redis.call('SMEMBERS', set) end
  local family = string.match(eventType, '^([^.]+)%.')
  for _, id in ipairs(members[set]) do
    local raw = redis.call('GET', ARGV[2] .. id)
    if raw then
      local w = cjson.decode(raw)
      local wants = (type(w.events) ~= 'table') or (next(w.events) == nil)
      if not wants then
        for _, p in ipairs(w.events) do if p == eventType or p == family .. '.*' then wants = true end end
      end
      if wants and not w.disabledAt then
        local member = id .. '/' .. eventId
        local d = {id = 'msg_' .. eventId, webhookId = id, eventId = eventId, type = eventType, outcome = 'pending',
          createdAt = ARGV[8], nextAttemptAt = ARGV[8], attempts = {}, tenantId = w.tenantId, body = body}
        if redis.call('SET', ARGV[3] .. member, cjson.encode(d), 'NX', 'EX', ARGV[6]) then
          redis.call('ZADD', KEYS[1], ARGV[1], member)
          local list = ARGV[4] .. id
          redis.call('ZADD', list, ARGV[1], member)
          redis.call('ZREMRANGEBYRANK', list, 0, -tonumber(ARGV[5]) - 1)
          redis.call('ZADD', ARGV[9] .. id, ARGV[1], member)
          redis.call('EXPIRE', ARGV[9] .. id, ARGV[6])
          n = n + 1
        end
      end
    end
  end
end
if #ids > 0 then redis.call('XACK', KEYS[2], ARGV[7], unpack(ids)) end
return n
`

// KEYS: webhook:due. ARGV: now ms, lease until ms, max. Takes due deliveries, moving each past its lease.
const CLAIM = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return due
`

// KEYS: the delivery, webhook:due, the webhook's pending set. ARGV: member, lease ms (the claim's), attempt json
// ('' for none), outcome, next due ms ('' when done), next attempt iso, ttl s.
// Records an attempt's outcome if the caller still holds the lease; 1 when it did, 0 when not.
const RECORD = `
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
local raw = redis.call('GET', KEYS[1])
if not raw then redis.call('ZREM', KEYS[2], ARGV[1]); redis.call('ZREM', KEYS[3], ARGV[1]); return 0 end
local d = cjson.decode(raw)
if type(d.attempts) ~= 'table' or next(d.attempts) == nil then d.attempts = {} end
if ARGV[3] ~= '' then table.insert(d.attempts, cjson.decode(ARGV[3])) end
d.outcome = ARGV[4]
if ARGV[5] ~= '' then
  d.nextAttemptAt = ARGV[6]
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
else
  d.nextAttemptAt = nil
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('SET', KEYS[1], cjson.encode(d), 'EX', ARGV[7])
return 1
`

// KEYS: the webhook's pending set, webhook:due. ARGV: mode, until ms, now ms.
// 'defer': every pending delivery of the webhook due before `until` (not those under a lease) waits until then;
// 'resume': those held back until exactly `until` are due now again. Returns how many it moved.
const DEFER = `
local n = 0
local untilMs = tonumber(ARGV[2])
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local s = redis.call('ZSCORE', KEYS[2], m)
  if s then
    s = tonumber(s)
    if ARGV[1] == 'defer' and s < untilMs then redis.call('ZADD', KEYS[2], 'XX', untilMs, m); n = n + 1 end
    if ARGV[1] == 'resume' and s == untilMs then redis.call('ZADD', KEYS[2], 'XX', ARGV[3], m); n = n + 1 end
  end
end
return n
`

export class WebhookStore {
  private readonly k: Keys

  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
    if (!('portholeWebhookFanOut' in redis)) {
      redis.defineCommand('portholeWebhookFanOut', { lua: FAN_OUT }) // its first argument: how many keys
      redis.defineCommand('portholeWebhookClaim', { numberOfKeys: 1, lua: CLAIM })
      redis.defineCommand('portholeWebhookRecord', { numberOfKeys: 3, lua: RECORD })
      redis.defineCommand('portholeWebhookDefer', { numberOfKeys: 2, lua: DEFER })
    }
  }

  async create (w: StoredWebhook): Promise<void> {
    await this.redis.multi().set(this.k.webhook(w.id), JSON.stringify(w)).sadd(this.k.webhooksByTenant(w.tenantId), w.id).sadd(this.k.webhooks, w.id).exec()
  }

  async get (id: string): Promise<StoredWebhook | undefined> {
    const raw = await this.redis.get(this.k.webhook(id))
    return raw === null ? undefined : fromLua(JSON.parse(raw) as StoredWebhook)
  }

  async count (tenantId: string): Promise<number> { return await this.redis.scard(this.k.webhooksByTenant(tenantId)) }

  /** A tenant's webhooks, or every one. */
  async list (tenantId?: string): Promise<StoredWebhook[]> {
    const ids = await this.redis.smembers(tenantId === undefined ? this.k.webhooks : this.k.webhooksByTenant(tenantId))
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.webhook(id)))
    return raws.filter((r): r is string => r !== null).map(r => fromLua(JSON.parse(r) as StoredWebhook))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
  }

  /** Removes a webhook; its pending deliveries are cancelled when they come due. False when unknown. */
  async delete (w: StoredWebhook): Promise<boolean> {
    const r = await this.redis.multi().del(this.k.webhook(w.id)).srem(this.k.webhooksByTenant(w.tenantId), w.id).srem(this.k.webhooks, w.id)
      .expire(this.k.webhookDeliveries(w.id), DELIVERY_TTL_SECONDS).exec()
    return r?.[0]?.[1] === 1
  }

  /** Stops deliveries to a webhook (its endpoint answered 410 Gone). */
  async disable (id: string, reason: string, at = new Date()): Promise<void> {
    const w = await this.get(id)
    if (w === undefined || w.disabledAt !== undefined) return
    await this.redis.set(this.k.webhook(id), JSON.stringify({ ...w, disabledAt: at.toISOString(), disabledReason: reason }), 'XX')
  }

  /**
   * Records the deliveries a batch of events makes and acknowledges the events on the stream's group, in one
   * step; how many deliveries it made. An event of no tenant (`tenantId` '') is only acknowledged.
   */
  async fanOut (events: Array<{ id: string, type: string, tenantId: string, body: string }>, now = Date.now()): Promise<number> {
    if (events.length === 0) return 0
    return await (this.redis as unknown as Scripts).portholeWebhookFanOut(
      2 + events.length, this.k.webhookDue, this.k.eventStream, ...events.map(e => this.k.webhooksByTenant(e.tenantId)),
      now, this.k.webhook(''), this.k.webhookDelivery(''), this.k.webhookDeliveries(''), DELIVERIES_KEPT, DELIVERY_TTL_SECONDS, WEBHOOK_GROUP, new Date(now).toISOString(),
      this.k.webhookPending(''), ...events.flatMap(e => [e.id, e.type, e.body])
    )
  }

  /** Takes up to `max` due deliveries until `leaseUntil` (ms); each comes with that lease, to record with. */
  async claim (max: number, leaseUntil: number, now = Date.now()): Promise<Array<{ member: string, lease: number, delivery?: StoredDelivery }>> {
    if (max <= 0) return []
    const members = await (this.redis as unknown as Scripts).portholeWebhookClaim(this.k.webhookDue, now, leaseUntil, max)
    if (members.length === 0) return []
    const raws = await this.redis.mget(members.map(m => this.k.webhookDelivery(m)))
    return members.map((member, i) => {
      const raw = raws[i]
      return raw === null || raw === undefined ? { member, lease: leaseUntil } : { member, lease: leaseUntil, delivery: deliveryFromLua(JSON.parse(raw) as StoredDelivery) }
    })
  }

  /**
   * Records an attempt (or none, for a cancellation) and what follows: `next` (ms) for another attempt then,
   * none when the delivery is done. False when the lease was lost (another replica holds it now).
   */
  async record (member: string, lease: number, o: { attempt?: DeliveryAttempt, outcome: WebhookDelivery['outcome'], next?: number }): Promise<boolean> {
    return await (this.redis as unknown as Scripts).portholeWebhookRecord(
      this.k.webhookDelivery(member), this.k.webhookDue, this.k.webhookPending(member.slice(0, member.indexOf('/'))), member, lease, o.attempt === undefined ? '' : JSON.stringify(o.attempt), o.outcome,
      o.next === undefined ? '' : o.next, o.next === undefined ? '' : new Date(o.next).toISOString(), DELIVERY_TTL_SECONDS
    ) === 1
  }

  /**
   * Holds back a webhook's due deliveries until `until` (ms): its endpoint has every slot it may have, so
   * they would only be claimed and put back, again and again, ahead of other webhooks' deliveries.
   */
  async defer (webhookId: string, until: number): Promise<number> {
    return await (this.redis as unknown as Scripts).portholeWebhookDefer(this.k.webhookPending(webhookId), this.k.webhookDue, 'defer', until, 0)
  }

  /** Makes the deliveries `defer` held back until `until` due now (a slot of their endpoint freed). */
  async resume (webhookId: string, until: number, now = Date.now()): Promise<number> {
    return await (this.redis as unknown as Scripts).portholeWebhookDefer(this.k.webhookPending(webhookId), this.k.webhookDue, 'resume', until, now)
  }

  /** A webhook's deliveries, newest first. */
  async deliveries (webhookId: string, limit = 100): Promise<WebhookDelivery[]> {
    const members = await this.redis.zrevrange(this.k.webhookDeliveries(webhookId), 0, limit - 1)
    if (members.length === 0) return []
    const raws = await this.redis.mget(members.map(m => this.k.webhookDelivery(m)))
    return raws.filter((r): r is string => r !== null).map(r => {
      const { tenantId: _t, body: _b, ...d } = deliveryFromLua(JSON.parse(r) as StoredDelivery)
      return d
    })
  }

  /** Creates the event stream's consumer group if it does not exist (new events only). */
  async ensureGroup (): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.k.eventStream, WEBHOOK_GROUP, '$', 'MKSTREAM')
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err
    }
  }

  get streamKey (): string { return this.k.eventStream }
}

interface Scripts {
  portholeWebhookFanOut: (...a: Array<string | number>) => Promise<number>
  portholeWebhookClaim: (...a: Array<string | number>) => Promise<string[]>
  portholeWebhookRecord: (...a: Array<string | number>) => Promise<number>
  portholeWebhookDefer: (...a: Array<string | number>) => Promise<number>
}

/** Lua's cjson writes an empty array as `{}`. */
function fromLua (w: StoredWebhook): StoredWebhook {
  if (w.events !== undefined && !Array.isArray(w.events)) delete w.events
  return w
}
function deliveryFromLua (d: StoredDelivery): StoredDelivery {
  if (!Array.isArray(d.attempts)) d.attempts = []
  return d
}
