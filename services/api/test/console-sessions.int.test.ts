import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { SecretBox, randomToken, sha256Hex } from '@porthole/shared/crypto'
import type { ConsoleSession } from '@porthole/contracts'
import { ConsoleSessionStore, ConsoleShareStore, createRedis, parseSessionEvent } from '@porthole/shared/store'
import { createLogger } from '@porthole/shared/logging'
import { waitFor } from '@porthole/testkit'
import { consumeJobs, dumpNamespace, kvmServer, startTestApi, tenantWithKey, twoTenants, type TestApi } from './helpers.js'

/** A session as the gateway would store it. */
async function session (api: TestApi, store: ConsoleSessionStore, tenantId: string, serverId: string, extra: Partial<ConsoleSession> = {}): Promise<ConsoleSession> {
  const box = new SecretBox('g1', new Map([['g1', randomBytes(32)]]))
  const id = crypto.randomUUID()
  const s: ConsoleSession = {
    id, serverId, tenantId, serverName: 'vm', jobId: crypto.randomUUID(), protocol: 'vnc',
    target: box.seal({ kind: 'vnc', host: '127.0.0.1', port: 5900, password: 'vncpass' }, id),
    tokenHash: sha256Hex(randomToken()), createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 600_000).toISOString(), singleUse: false, ...extra
  }
  await store.create(s)
  return s
}

/** The console sessions' events as the gateways get them, from now on. */
async function sessionEvents (t: { after: (fn: () => void) => void }, api: TestApi, store: ConsoleSessionStore): Promise<unknown[]> {
  const sub = createRedis(api.svc.redisUrl, createLogger({ name: 'test', level: 'silent' }), 'test-sub')
  t.after(() => { sub.disconnect() })
  const events: unknown[] = []
  sub.on('message', (_c: string, m: string) => events.push(parseSessionEvent(m)))
  await sub.subscribe(store.eventsChannel)
  return events
}

/** An API, its session store, and the helpers' two tenants with a customer key and a server each. */
async function sessionsApi (t: Parameters<typeof startTestApi>[0]): Promise<{ api: TestApi, store: ConsoleSessionStore } & Awaited<ReturnType<typeof twoTenants>>> {
  const api = await startTestApi(t)
  return { api, store: new ConsoleSessionStore(api.redis, api.ns), ...await twoTenants(api) }
}

test('console sessions: customers list and revoke their own; revocation is published for the gateway', async (t) => {
  const { api, store, a, b, sa, sb } = await sessionsApi(t)
  const mine = await session(api, store, a.tenantId, sa)
  const theirs = await session(api, store, b.tenantId, sb)
  await store.takeViewer(mine, 'viewer-1')

  const list = await api.call('GET', '/v1/console-sessions', undefined, { key: a.key })
  assert.equal(list.status, 200)
  assert.deepEqual(list.body, [{ id: mine.id, serverId: sa, tenantId: a.tenantId, protocol: 'vnc', createdAt: mine.createdAt, expiresAt: mine.expiresAt, singleUse: false, connected: true, renewable: false }])
  assert.ok(!list.raw.includes('vncpass') && !list.raw.includes(mine.tokenHash), 'no target, no token hash')
  assert.equal((await api.call('GET', '/v1/console-sessions')).body.length, 2)
  assert.equal((await api.call('GET', `/v1/console-sessions?serverId=${sb}`)).body[0].id, theirs.id)
  assert.equal((await api.call('GET', `/v1/console-sessions/${theirs.id}`, undefined, { key: a.key })).status, 404)
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${theirs.id}`, undefined, { key: a.key })).status, 404)
  assert.equal((await store.get(theirs.id))?.revokedAt, undefined)

  const events = await sessionEvents(t, api, store)

  assert.equal((await api.call('DELETE', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })).status, 204)
  await waitFor(() => events.length === 1, 3000, 'the revocation event')
  assert.deepEqual(events[0], { type: 'revoked', sessionId: mine.id })
  const after = await api.call('GET', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })
  assert.ok(after.body.revokedAt)
  assert.equal(await store.findByTokenHash(mine.tokenHash), undefined, 'the token no longer opens it')
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })).status, 204, 'revoking again is harmless')
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${crypto.randomUUID()}`)).status, 404)
})

test('renewing a console session: its own tenant only, a new expiry within the limits, audited; problems for the rest', async (t) => {
  const { api, store, a, b, sa } = await sessionsApi(t)
  const created = Date.now()
  const mine = await session(api, store, a.tenantId, sa, { ttlSeconds: 600, maxExpiresAt: new Date(created + 3 * 3600_000).toISOString() })
  await store.takeViewer(mine, 'viewer-1')
  const events = await sessionEvents(t, api, store)

  // Another tenant's customer: 404, as for a session that does not exist; the session is untouched.
  const foreign = await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, { ttlSeconds: 3600 }, { key: b.key })
  assert.equal(foreign.status, 404)
  assert.equal(foreign.headers['content-type'], 'application/problem+json; charset=utf-8')
  assert.equal((await store.get(mine.id))?.expiresAt, mine.expiresAt)

  const r = await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, { ttlSeconds: 3600 }, { key: a.key })
  assert.equal(r.status, 200, r.raw)
  assert.deepEqual(Object.keys(r.body).sort(), ['expiresAt', 'maxExpiresAt', 'sessionId'])
  const expiresAt = Date.parse(r.body.expiresAt)
  assert.ok(expiresAt >= created + 3600_000 && expiresAt <= Date.now() + 3600_000, r.body.expiresAt)
  assert.equal((await store.get(mine.id))?.expiresAt, r.body.expiresAt)
  assert.ok(await store.findByTokenHash(mine.tokenHash), 'the token still opens it')
  assert.ok(await api.redis.ttl(`${api.ns}:console:token:${mine.tokenHash}`) > 3000, 'the token lives as long as the session')
  assert.deepEqual(await store.connected([mine.id]), [true], 'the viewer record lives on')
  await waitFor(() => events.length === 1, 3000, 'the renewal event')
  assert.deepEqual(events[0], { type: 'renewed', sessionId: mine.id, expiresAt: r.body.expiresAt })
  const view = await api.call('GET', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })
  assert.equal(view.body.expiresAt, r.body.expiresAt)

  // No body: the session's first lifetime again, from now (not shorter than it is: it stays).
  const dflt = await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, undefined, { key: a.key })
  assert.equal(dflt.status, 200, dflt.raw)
  assert.equal(dflt.body.expiresAt, r.body.expiresAt)
  // Bad input: a problem naming the field.
  const bad = await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, { ttlSeconds: 7201 }, { key: a.key })
  assert.equal(bad.status, 400)
  assert.match(bad.raw, /ttlSeconds/)
  // Up to its total: at most maxExpiresAt, then 409.
  await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, { ttlSeconds: 7200 }, { key: a.key })
  await store.renew(mine.id, 7200, created + 2 * 3600_000) // as if an hour later: reaches created + 3 h
  assert.equal((await store.get(mine.id))?.expiresAt, new Date(created + 3 * 3600_000).toISOString())
  const full = await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, { ttlSeconds: 600 }, { key: a.key })
  assert.equal(full.status, 409)
  assert.match(full.body.detail, /CONSOLE_MAX_TOTAL_SECONDS/)
  // Revoked: 409.
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })).status, 204)
  const gone = await api.call('POST', `/v1/console-sessions/${mine.id}/renew`, {}, { key: a.key })
  assert.equal(gone.status, 409)
  assert.match(gone.body.detail, /revoked/)

  const audit = await api.call('GET', `/v1/audit?tenantId=${a.tenantId}`)
  const renewals = (audit.body as Array<{ action: string, result: string, sessionId?: string }>).filter(e => e.action === 'console-session.renew' && e.sessionId === mine.id)
  assert.deepEqual(renewals.map(e => e.result.replace(/ until .*/, '')).sort(), ['at-limit', 'ok:', 'ok:', 'ok:', 'revoked'])
})

test('a console request with renewable: true makes a job that says so, with the tenant limit', async (t) => {
  const api = await startTestApi(t, { env: { CONSOLE_MAX_TOTAL_SECONDS: '7200' } })
  const a = await tenantWithKey(api, 'a')
  const sa = await kvmServer(api, a.tenantId, 'va')
  const published: unknown[] = []
  await consumeJobs(api, async (body) => { published.push((body as { console?: unknown }).console) })
  const r = await api.call('POST', `/v1/servers/${sa}/console?wait=0`, { renewable: true, ttlSeconds: 600 }, { key: a.key })
  assert.equal(r.status, 202, r.raw)
  await waitFor(() => published.length === 1, 5000, 'the console job')
  assert.deepEqual(published[0], { protocol: 'vnc', ttlSeconds: 600, singleUse: false, renewable: true, maxTotalSeconds: 7200 })
})

test('sharing a console session: its own tenant only, a second URL whose token Redis keeps hashed, view-only by default, audited; problems for the rest', async (t) => {
  const { api, store, a, b, sa } = await sessionsApi(t)
  const shares = new ConsoleShareStore(api.redis, api.ns)
  const mine = await session(api, store, a.tenantId, sa)

  const foreign = await api.call('POST', `/v1/console-sessions/${mine.id}/share`, {}, { key: b.key })
  assert.equal(foreign.status, 404)
  assert.equal(foreign.headers['content-type'], 'application/problem+json; charset=utf-8')

  const r = await api.call('POST', `/v1/console-sessions/${mine.id}/share`, { label: 'support: Ann' }, { key: a.key })
  assert.equal(r.status, 201, r.raw)
  assert.deepEqual(Object.keys(r.body).sort(), ['expiresAt', 'label', 'sessionId', 'shareId', 'url', 'viewOnly'])
  assert.equal(r.body.viewOnly, true, 'view-only unless asked otherwise')
  assert.equal(r.body.expiresAt, mine.expiresAt, 'by default it ends with the session')
  const m = new RegExp(`^${api.config.PUBLIC_GATEWAY_URL}/s/${mine.id}#([A-Za-z0-9_-]{43})$`).exec(r.body.url as string)
  assert.ok(m !== null, r.body.url)
  const token = m[1] as string
  const rec = await shares.findByTokenHash(sha256Hex(token))
  assert.equal(rec?.id, r.body.shareId)
  assert.equal(rec?.label, 'support: Ann')
  assert.ok(!(await dumpNamespace(api.redis, api.ns)).includes(token), 'Redis keeps the token\'s hash only')
  assert.equal(r.headers['cache-control'], 'no-store')

  const interactive = await api.call('POST', `/v1/console-sessions/${mine.id}/share`, { viewOnly: false, ttlSeconds: 60 }, { key: a.key })
  assert.equal(interactive.status, 201)
  assert.equal(interactive.body.viewOnly, false)
  assert.ok(Date.parse(interactive.body.expiresAt) <= Date.now() + 60_000)

  const bad = await api.call('POST', `/v1/console-sessions/${mine.id}/share`, { viewOnly: 'yes', ttlSeconds: 5 }, { key: a.key })
  assert.equal(bad.status, 400)
  assert.match(bad.raw, /viewOnly|ttlSeconds/)
  const serial = await session(api, store, a.tenantId, sa, { protocol: 'serial' })
  const refused = await api.call('POST', `/v1/console-sessions/${serial.id}/share`, {}, { key: a.key })
  assert.equal(refused.status, 422, refused.raw)
  assert.match(refused.body.detail, /serial/)
  assert.equal((await api.call('DELETE', `/v1/console-sessions/${mine.id}`, undefined, { key: a.key })).status, 204)
  const gone = await api.call('POST', `/v1/console-sessions/${mine.id}/share`, {}, { key: a.key })
  assert.equal(gone.status, 409)

  const audit = await api.call('GET', `/v1/audit?tenantId=${a.tenantId}`)
  const shared = (audit.body as Array<{ action: string, result: string, sessionId?: string }>).filter(e => e.action === 'console-session.share' && e.sessionId === mine.id)
  assert.deepEqual(shared.map(e => e.result.replace(/ share .*/, '')).sort(), ['ok: interactive', 'ok: view-only'])
})
