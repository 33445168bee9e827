import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createLogger } from '../../src/logging/index.js'
import { createRedis } from '../../src/store/index.js'
import { hostPorts } from '../../src/config/index.js'
import { sentinelGroup, services, tcpProxy, uniqueNamespace, waitFor, within } from '@porthole/testkit'

const log = createLogger({ name: 'test', level: 'silent' })

test('a command Redis does not answer fails after the command timeout instead of hanging', async (t) => {
  const svc = await services()
  const target = new URL(svc.redisUrl)
  const proxy = await tcpProxy(target.hostname, Number(target.port))
  t.after(async () => await proxy.close())
  const r = createRedis(proxy.url(svc.redisUrl), log, 'test', { commandTimeoutMs: 300 })
  t.after(() => { r.disconnect() })
  assert.equal(await r.ping(), 'PONG')
  proxy.freeze()
  // A frozen Redis never answers: only the command timeout can end this within the bound.
  await within(assert.rejects(r.get(`${uniqueNamespace()}:x`), /timed out/i), 15_000, 'the command to time out')
})

test('a subscriber made with createRedis keeps receiving messages long after the command timeout', async (t) => {
  const svc = await services()
  const sub = createRedis(svc.redisUrl, log, 'test-sub', { commandTimeoutMs: 100 })
  const pub = createRedis(svc.redisUrl, log, 'test-pub')
  t.after(() => { sub.disconnect(); pub.disconnect() })
  const channel = `${uniqueNamespace()}:events`
  const got: string[] = []
  const errors: Error[] = []
  sub.on('message', (_c: string, m: string) => got.push(m))
  sub.on('error', (e: Error) => errors.push(e))
  const id = String(await sub.client('ID'))
  await sub.subscribe(channel)
  // Redis itself says when the subscriber has sent nothing for a whole second (ten command timeouts): its
  // `idle` in CLIENT LIST, rather than a sleep of ours.
  const quiet = async (): Promise<void> => {
    await waitFor(async () => /\bidle=([1-9]\d*)\b/.test(String(await pub.client('LIST', 'ID', id))), 10_000, 'Redis to report the subscriber idle for a second', 100)
  }
  await quiet()
  await pub.publish(channel, 'one')
  await waitFor(() => got.length === 1, 2000, 'first message')
  await quiet()
  await pub.publish(channel, 'two')
  await waitFor(() => got.length === 2, 2000, 'second message')
  assert.deepEqual(got, ['one', 'two'])
  assert.deepEqual(errors, [])
})

test('through Sentinel, createRedis writes to the primary and follows a failover to the replica by itself', async (t) => {
  const group = await sentinelGroup(t)
  const settings = { REDIS_URL: 'redis://ignored-with-sentinels:1', REDIS_SENTINELS: hostPorts('').parse(group.sentinels), REDIS_SENTINEL_NAME: group.name }
  const r = createRedis(settings, log, 'test-sentinel')
  const sub = createRedis(settings, log, 'test-sentinel-sub')
  t.after(() => { r.disconnect(); sub.disconnect() })
  const got: string[] = []
  sub.on('message', (_c: string, m: string) => got.push(m))
  await sub.subscribe('events')
  await r.set('k', 'before')
  const first = await group.primaryPort()
  assert.equal(Number(await r.config('GET', 'port').then(x => (x as string[])[1])), first, 'commands go to the primary the Sentinels name')

  const next = await group.failover()
  assert.notEqual(next, first)
  // The same connection, without being told: writes land on the new primary, the subscriber is subscribed there.
  await waitFor(async () => await r.set('k', 'after').then(() => true, () => false), 30_000, 'a write to succeed after the failover')
  assert.equal(Number(await r.config('GET', 'port').then(x => (x as string[])[1])), next)
  assert.equal(await r.get('k'), 'after')
  await waitFor(async () => { await r.publish('events', 'after failover'); return got.includes('after failover') }, 30_000, 'the subscriber to hear the new primary')
})
