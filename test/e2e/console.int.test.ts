// A console URL in one call, through the whole system, for a real VM; the token it carries appears
// nowhere else: not in the job, not in Redis, not in a log line. "Reaches the VM" is asked of the VM itself:
// the desktop name in its RFB ServerInit (QEMU's, naming the domain) — the gateway's own greeting comes
// before the target is even connected, and would pass with the VM down.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { firstBytes, tinyDomain, virsh, within, type TinyDomain } from '@porthole/testkit'
import { consoleAddress, vncViewer, type LiveViewer } from '../security/support.js'
import { fileStack, kvmServer, tenant } from './fixtures.js'

const stack = await fileStack()
const acme = await tenant(stack)

/** A live console of `dom` through the gateway, up to the VM's own ServerInit; closed by the test's end. */
async function liveConsole (t: { after: (fn: () => void) => void }, url: string, dom: TinyDomain): Promise<LiveViewer> {
  const v = await vncViewer(consoleAddress(url))
  t.after(() => { v.ws.terminate() })
  assert.ok(v.name.includes(dom.name), `the desktop name "${v.name}" is the VM's (${dom.name})`)
  return v
}

/** How a live console ended, bounded (the gateway closes it within a second of a revocation). */
async function ended (v: LiveViewer, what: string): Promise<number> {
  return (await within(v.closed, 10_000, what)).code
}

test('one call gives a URL that reaches the VM; the token is in no job, no Redis key and no log line', async (t) => {
  const dom = await tinyDomain(t, { vncPassword: 'vncPw123' })
  const id = await kvmServer(stack, acme.tenantId, dom)
  const r = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  const url = new URL(r.body.url)
  const token = url.hash.slice(1)
  assert.ok(token.length >= 22, 'at least 128 bits')
  assert.equal(url.search, '')
  assert.ok(Date.parse(r.body.expiresAt) - Date.now() <= 600_000)
  // The gateway answered the VNC password challenge itself: the browser is offered security None, and what
  // follows is the VM's own ServerInit.
  const live = await liveConsole(t, r.body.url, dom)

  const jobs = await stack.api('GET', `/v1/jobs?serverId=${id}`, undefined, { key: acme.customerKey })
  assert.equal(jobs.body[0].kind, 'console')
  assert.equal(jobs.body[0].state, 'succeeded')
  const redis = new Redis(stack.svc.redisUrl)
  t.after(() => { redis.disconnect() })
  const dump: string[] = []
  for (const k of await redis.keys(`${stack.ns}:*`)) {
    const type = await redis.type(k)
    if (type === 'string') dump.push(await redis.get(k) ?? '')
    else if (type === 'stream') dump.push(JSON.stringify(await redis.xrange(k, '-', '+')))
    else if (type === 'zset') dump.push((await redis.zrange(k, 0, -1)).join(' '))
  }
  for (const place of [JSON.stringify(jobs.body), dump.join('\n'), stack.logs()]) {
    assert.ok(!place.includes(token), 'the token leaked')
    assert.ok(!place.includes('vncPw123'), 'the VNC password leaked')
  }

  const sessions = await stack.api('GET', `/v1/console-sessions?serverId=${id}`, undefined, { key: acme.customerKey })
  assert.equal(sessions.body.length, 1)
  assert.equal(sessions.body[0].id, r.body.sessionId)
  const del = await stack.api('DELETE', `/v1/console-sessions/${r.body.sessionId}`, undefined, { key: acme.customerKey })
  assert.equal(del.status, 204)
  assert.equal(await ended(live, 'the revoked console to close'), 4002, 'the live console closes as revoked')
  await assert.rejects(firstBytes(r.body.url), /closed 40/)
})

test('a console for a VM that is off is a 409 problem, not a dead URL', async (t) => {
  const dom = await tinyDomain(t, { start: false })
  const id = await kvmServer(stack, acme.tenantId, dom)
  assert.equal(await virsh('domstate', dom.name), 'shut off')
  const r = await stack.api('POST', `/v1/servers/${id}/console`, {}, { key: acme.customerKey })
  assert.equal(r.status, 409, JSON.stringify(r.body))
  assert.match(r.headers.get('content-type') ?? '', /problem\+json/)
  assert.equal(r.body.url, undefined)
})

test('deleting a server, or changing where it is reached, ends its live consoles', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const a = await stack.api('POST', `/v1/servers/${id}/console`, {})
  assert.equal(a.status, 201, JSON.stringify(a.body))
  // Open while the PATCH lands: the change must end a console that is in use, not only refuse new ones.
  const liveA = await liveConsole(t, a.body.url, dom)
  const patch = await stack.api('PATCH', `/v1/servers/${id}`, { connection: { domain: dom.name } })
  assert.equal(patch.status, 200, JSON.stringify(patch.body))
  assert.equal(await ended(liveA, 'the console to close after the PATCH'), 4002)
  await assert.rejects(firstBytes(a.body.url), /closed 40/)

  const b = await stack.api('POST', `/v1/servers/${id}/console`, {})
  assert.equal(b.status, 201, JSON.stringify(b.body))
  const liveB = await liveConsole(t, b.body.url, dom)
  assert.equal((await stack.api('DELETE', `/v1/servers/${id}`)).status, 204)
  assert.equal(await ended(liveB, 'the console to close after the DELETE'), 4002)
  await assert.rejects(firstBytes(b.body.url), /closed 40/)
})
