// Kiosk stations on the real API and Redis: the store keeps only the secret's SHA-256 and one session slot
// per station; the page is served CSP-tight; a missing, wrong, another station's or expired secret gets a
// 401 problem that says which, and the secret is in no Redis key, value or log line.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { StationStore } from '../src/stations/store.js'
import { PoolStore } from '@porthole/shared/store'
import { dumpNamespace, startTestApi } from './helpers.js'

const DAY = 86_400_000

test('the store keeps the secret hashed, lists per pool, holds one hand-out per station and deletes with the session', async (t) => {
  const api = await startTestApi(t)
  const store = new StationStore(api.redis, api.ns)
  const tenantId = randomUUID()
  const { station, secret } = await store.create({ pool: 'branch12', tenantId, name: 'desk 3', createdBy: 'k1' })
  const other = await store.create({ pool: 'branch12', tenantId, createdBy: 'k1' })
  await store.create({ pool: 'branch13', tenantId, createdBy: 'k1' })
  assert.ok(secret.length >= 43, '256 bits')
  assert.deepEqual((await store.list('branch12')).map(s => s.id), [station.id, other.station.id])
  assert.equal((await store.open(station.id, secret)).ok, true)
  assert.deepEqual(await store.open(station.id, other.secret), { ok: false, reason: 'unknown' }, "another station's secret opens nothing")
  const dump = await dumpNamespace(api.redis, api.ns)
  assert.ok(!dump.includes(secret) && !dump.includes(other.secret), 'no secret in Redis')
  assert.ok(dump.includes(station.secretHash))

  assert.equal(await store.hold(station.id, 60_000), true)
  assert.equal(await store.hold(station.id, 60_000), false, 'one hand-out at a time per station')
  assert.equal(await store.session(station.id), undefined, 'a hold is no session')
  const expiresAt = new Date(Date.now() + 600_000).toISOString()
  await store.setSession(station.id, { sessionId: 's1', serverId: 'v1', expiresAt })
  assert.equal(await store.clearSession(station.id, 's2'), false, 'another session id frees nothing')
  assert.equal(await store.clearSession(station.id), false, 'nor does a failed hand-out once the session is set')
  assert.deepEqual(await store.session(station.id), { sessionId: 's1', serverId: 'v1', expiresAt })
  const ttl = await api.redis.pttl(`${api.ns}:station-session:${station.id}`)
  assert.ok(ttl > 590_000 && ttl <= 600_000, `the slot lives until the session's expiry (${ttl} ms)`)

  assert.deepEqual(await store.delete(station.id), { session: { sessionId: 's1', serverId: 'v1', expiresAt } })
  assert.equal(await store.delete(station.id), false)
  assert.deepEqual(await store.open(station.id, secret), { ok: false, reason: 'unknown' })
  assert.deepEqual((await store.list('branch12')).map(s => s.id), [other.station.id])
  assert.equal(await api.redis.exists(`${api.ns}:station-secret:${station.secretHash}`, `${api.ns}:station-session:${station.id}`, `${api.ns}:station:${station.id}`), 0)
})

test('the page: CSP-tight, framing only the gateway, assets by name only', async (t) => {
  const api = await startTestApi(t, { env: { PUBLIC_GATEWAY_URL: 'https://gw.example:8443/console' } })
  const page = await api.call('GET', `/station/${randomUUID()}`, undefined, { key: null })
  assert.equal(page.status, 200)
  assert.match(String(page.headers['content-type']), /^text\/html/)
  const csp = String(page.headers['content-security-policy'])
  for (const d of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", 'frame-src https://gw.example:8443', "frame-ancestors 'none'", "img-src 'self' data:"]) assert.ok(csp.includes(d), `${d} in ${csp}`)
  assert.ok(!csp.includes('unsafe-inline'))
  assert.equal(page.headers['referrer-policy'], 'no-referrer')
  assert.equal(page.headers['cache-control'], 'no-store')
  assert.doesNotMatch(page.raw, /<script>|\son[a-z]+="|<style>|style="/, 'no inline script, handler or style for the CSP to refuse')
  assert.doesNotMatch(page.raw, /(src|href)="\//, 'asset paths are relative')
  for (const a of ['station.js', 'machine.js', 'station.css']) assert.equal((await api.call('GET', `/station/assets/${a}`, undefined, { key: null })).status, 200, a)
  assert.equal((await api.call('GET', '/station/assets/..%2Fpackage.json', undefined, { key: null })).status, 404)
  assert.equal((await api.call('GET', '/station/assets/index.html', undefined, { key: null })).status, 404)
})

test('a missing, wrong, foreign or expired station secret is a 401 problem saying which; the secret is never logged', async (t) => {
  const api = await startTestApi(t)
  const store = new StationStore(api.redis, api.ns)
  const a = await store.create({ pool: 'p', tenantId: randomUUID(), createdBy: 'k' })
  const b = await store.create({ pool: 'p', tenantId: randomUUID(), createdBy: 'k' })
  const old = await store.create({ pool: 'p', tenantId: randomUUID(), createdBy: 'k', ttlDays: 1 }, Date.now() - 2 * DAY)
  const ask = async (id: string, secret?: string) => await api.call('GET', `/station/${id}/info`, undefined, { key: null, headers: secret === undefined ? {} : { authorization: `Station ${secret}` } })
  const cases: Array<[string, Awaited<ReturnType<typeof ask>>, RegExp]> = [
    ['no secret', await ask(a.station.id), /station link is not valid/],
    ['a wrong secret', await ask(a.station.id, 'x'.repeat(43)), /station link is not valid/],
    ["another station's secret", await ask(a.station.id, b.secret), /station link is not valid/],
    ['an API key in place of the secret', await api.call('GET', `/station/${a.station.id}/info`, undefined), /station link is not valid/],
    ['an expired station', await ask(old.station.id, old.secret), new RegExp(`link expired at ${old.station.expiresAt.replace(/\./g, '\\.')}`)]
  ]
  for (const [what, r, detail] of cases) {
    assert.equal(r.status, 401, `${what}: ${r.raw}`)
    assert.match(String(r.headers['content-type']), /problem\+json/, what)
    assert.match(r.body.detail, detail, what)
  }
  for (const post of [`/station/${a.station.id}/sessions`, `/station/${a.station.id}/sessions/${randomUUID()}/finish`]) {
    assert.equal((await api.call('POST', post, undefined, { key: null, headers: { authorization: `Station ${b.secret}` } })).status, 401, post)
  }
  const logs = api.logLines.join('\n')
  for (const s of [a.secret, b.secret, old.secret]) assert.ok(!logs.includes(s), 'a station secret in a log line')
})

test("deleting a pool removes its stations: their links stop working and a new pool of that name has none", async (t) => {
  const api = await startTestApi(t)
  const tenantId = randomUUID()
  const pools = new PoolStore(api.redis, api.ns)
  const pool = await pools.create({ name: 'lobby', tenantId, template: '/var/lib/porthole/golden/lobby.qcow2', size: 1 }, { idleTimeoutSeconds: 300, maxSessionSeconds: 3600 })
  assert.ok(pool !== undefined)
  const store = new StationStore(api.redis, api.ns)
  const a = await store.create({ pool: 'lobby', tenantId, createdBy: 'k' })
  await store.create({ pool: 'lobby', tenantId, createdBy: 'k' })
  const elsewhere = await store.create({ pool: 'hall', tenantId, createdBy: 'k' })
  assert.equal((await api.call('DELETE', '/v1/pools/lobby')).status, 204)
  assert.deepEqual(await store.list('lobby'), [])
  assert.deepEqual((await store.list('hall')).map(s => s.id), [elsewhere.station.id], "another pool's stations stay")
  const info = await api.call('GET', `/station/${a.station.id}/info`, undefined, { key: null, headers: { authorization: `Station ${a.secret}` } })
  assert.equal(info.status, 401, info.raw)
  const entry = (await api.call('GET', '/v1/audit?limit=20')).body.find((e: { action: string }) => e.action === 'pool.delete')
  assert.equal(entry?.result, 'ok; 2 station(s) removed')
})
