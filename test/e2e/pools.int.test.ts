// Kiosk pools through the whole system, against real libvirt and real qcow2 files: a template on a tiny golden
// image, clones made by the agents' pool controller, handed out by the API in one call, destroyed after use.
// What happened is asked of libvirt (virsh) and the file system, never of Porthole's own records alone.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileDigest, poolDomains, poolTemplate, testPoolName, virsh, waitFor, within } from '@porthole/testkit'
import { defined, poolKit } from './pool-fixtures.js'

const { stack, overlays, hookOut, acme, other, pool, readyPool, handOut, live } = await poolKit()

test('a broken template is refused with a problem that says what is wrong, and no pool is kept', async (t) => {
  const cases: Array<[string, () => Promise<string>, RegExp]> = [
    ['internal snapshots', async () => (await poolTemplate(t, { snapshot: true })).dom.name, /internal snapshot/],
    ['an overlay', async () => (await poolTemplate(t, { overlay: true })).dom.name, /itself an overlay/],
    ['a raw first disk', async () => (await poolTemplate(t, { format: 'raw' })).dom.name, /not qcow2/],
    ['no such domain', async () => 'porthole-test-no-such-domain', /no domain/]
  ]
  for (const [what, make, why] of cases) {
    const name = testPoolName()
    const r = await stack.api('POST', '/v1/pools', { name, tenantId: acme.tenantId, template: await make(), size: 1 })
    assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`)
    assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/)
    assert.match(r.body.detail, why, what)
    assert.equal((await stack.api('GET', `/v1/pools/${name}`)).status, 404, `${what}: the refused pool is not kept`)
    assert.deepEqual(await poolDomains(name), [], `${what}: nothing was cloned`)
  }
  // A hook the agents do not have is refused too, by name.
  const tpl = await poolTemplate(t)
  const r = await stack.api('POST', '/v1/pools', { name: testPoolName(), tenantId: acme.tenantId, template: tpl.dom.name, size: 1, hooks: ['no-such-hook'] })
  assert.equal(r.status, 422, JSON.stringify(r.body))
  assert.match(r.body.detail, /no-such-hook/)
})

test('hand out, disconnect: the VM and its overlay are gone (virsh, fs) and the slot is refilled; the golden image is never written', async (t) => {
  const p = await pool(t, { size: 1, hooks: ['record'] })
  const digest = await fileDigest(p.template.image)
  const view = await readyPool(p.name, 1)
  assert.equal(view.state, 'active')
  const [first] = await poolDomains(p.name)
  assert.ok(first !== undefined)
  assert.equal(await virsh('domstate', first), 'running')
  // What libvirt says of the clone: its pool and slot, the deterministic MAC, a display on loopback, the overlay.
  const xml = await virsh('dumpxml', first)
  assert.match(xml, new RegExp(`<porthole:clone[^>]*pool=['"]${p.name}['"][^>]*slot=['"]0['"]`))
  const mac = `0a:50:${(view.poolId >> 8).toString(16).padStart(2, '0')}:${(view.poolId & 0xff).toString(16).padStart(2, '0')}:00:00`
  assert.match(xml, new RegExp(`<mac address='${mac}'/>`))
  assert.match(xml, /<graphics type='vnc' port='\d+' autoport='yes' listen='127\.0\.0\.1'>/)
  const overlay = join(overlays, `${first}.qcow2`)
  assert.ok(xml.includes(overlay), 'the first disk is the overlay')
  assert.ok(xml.includes(p.template.image), 'whose backing file is the golden image')
  assert.equal(await virsh('domuuid', first) === await virsh('domuuid', p.template.dom.name), false, 'a fresh UUID')
  // The hook ran before boot with the clone's facts.
  const recorded = (await readFile(join(hookOut, first), 'utf8')).trim().split(' ')
  assert.deepEqual(recorded, [p.name, first, '0', mac, overlay])

  // Its tenant's customers read the pool without the template's domain name or the hooks; staff see them.
  const own = await stack.api('GET', `/v1/pools/${p.name}`, undefined, { key: acme.customerKey })
  assert.equal(own.status, 200, JSON.stringify(own.body))
  assert.equal(own.body.ready, 1)
  assert.equal(own.body.template, undefined)
  assert.equal(own.body.hooks, undefined)
  assert.equal(view.template, p.template.dom.name)
  assert.equal((await stack.api('GET', `/v1/pools/${p.name}`, undefined, { key: other.customerKey })).status, 404)
  // Another tenant's key sees no such pool; the pool's tenant's key gets the VM's console in one call.
  assert.equal((await handOut(p.name, other.customerKey)).status, 404)
  const r = await handOut(p.name, acme.customerKey)
  assert.equal(r.status, 201, JSON.stringify(r.body))
  assert.deepEqual(Object.keys(r.body).sort(), ['expiresAt', 'serverId', 'sessionId', 'url'])
  // The pool is empty now: 503 with Retry-After.
  const empty = await handOut(p.name, acme.customerKey)
  assert.equal(empty.status, 503, JSON.stringify(empty.body))
  assert.ok(Number(empty.headers.get('retry-after')) >= 1)
  const v = await live(t, r.body.url)
  assert.ok(v.name.includes(first), `the console is the clone's (${v.name})`)

  v.ws.close()
  await waitFor(async () => !await defined(first), 60_000, `clone ${first} to be destroyed and undefined`, 200)
  await waitFor(() => !existsSync(overlay), 30_000, `overlay ${overlay} to be deleted`, 100)
  const refilled = await readyPool(p.name, 1)
  const [second] = await poolDomains(p.name)
  assert.ok(second !== undefined && second !== first, 'a new clone, under a new name')
  assert.match(second, new RegExp(`^${p.name}-0-`), 'in the same slot')
  assert.match(await virsh('dumpxml', second), new RegExp(`<mac address='${mac}'/>`), 'with the same MAC')
  assert.equal(refilled.inUse, 0)
  assert.equal(await fileDigest(p.template.image), digest, 'the golden image was never written')
  // The server record went with the clone.
  assert.equal((await stack.api('GET', `/v1/servers/${r.body.serverId}`)).status, 404)
})

test('a kiosk key hands out and may do nothing else', async (t) => {
  const p = await pool(t, { size: 1 })
  const k = await stack.api('POST', '/v1/api-keys', { role: 'kiosk', tenantId: acme.tenantId, name: 'branch-7' })
  assert.equal(k.status, 201, JSON.stringify(k.body))
  assert.equal((await stack.api('POST', '/v1/api-keys', { role: 'kiosk', name: 'no-tenant' })).status, 400)
  for (const [method, path] of [['GET', '/v1/servers'], ['GET', '/v1/pools'], ['GET', `/v1/pools/${p.name}`], ['GET', '/v1/jobs'], ['DELETE', `/v1/pools/${p.name}`]] as const) {
    const r = await stack.api(method, path, undefined, { key: k.body.key })
    assert.equal(r.status, 403, `${method} ${path}: ${JSON.stringify(r.body)}`)
  }
  await readyPool(p.name, 1)
  const r = await stack.api('POST', `/v1/pools/${p.name}/sessions?wait=30`, undefined, { key: k.body.key })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  // Revoking the session ends the VM too; a hand-out asked for meanwhile (the pool is empty) waits for the refill.
  const revoke = await stack.api('DELETE', `/v1/console-sessions/${r.body.sessionId}`)
  assert.equal(revoke.status, 204, JSON.stringify(revoke.body))
  const waited = await stack.api('POST', `/v1/pools/${p.name}/sessions?wait=60`, undefined, { key: k.body.key })
  assert.equal(waited.status, 201, JSON.stringify(waited.body))
  assert.notEqual(waited.body.serverId, r.body.serverId, 'a new clone, never the revoked one')
  assert.equal((await stack.api('GET', `/v1/servers/${r.body.serverId}`)).status, 404, 'the revoked clone is gone')
})

test('no input for idleTimeoutSeconds ends the session and the VM; input keeps it alive', async (t) => {
  const idle = 10
  const p = await pool(t, { size: 2, idleTimeoutSeconds: idle })
  await readyPool(p.name, 2)
  // Two sessions: A gets keyboard input all along, B (opened after A) none. B's idle close is the event that
  // says A has gone a whole idle timeout with input: no clock in the test decides it.
  const ra = await handOut(p.name, acme.customerKey)
  assert.equal(ra.status, 201, JSON.stringify(ra.body))
  const a = await live(t, ra.body.url)
  const rb = await handOut(p.name, acme.customerKey)
  assert.equal(rb.status, 201, JSON.stringify(rb.body))
  const b = await live(t, rb.body.url)
  const cloneOf = async (serverId: string): Promise<string> => {
    const view = await stack.api('GET', `/v1/servers/${serverId}`)
    return view.body.name as string
  }
  const [cloneA, cloneB] = [await cloneOf(ra.body.serverId), await cloneOf(rb.body.serverId)]
  let closedEarly: { code: number, reason: string } | undefined
  void a.closed.then((c) => { closedEarly = c })
  let bClosed = false
  const bEnd = b.closed.then((c) => { bClosed = true; return c })
  // Input paced by the VM itself: Shift pressed and released, then a 1×1 screen request whose answer comes
  // back before the next round.
  const answer = async (): Promise<void> => { await new Promise<void>((resolve) => { a.ws.once('message', () => resolve()) }) }
  while (!bClosed && closedEarly === undefined) {
    for (const down of [1, 0]) a.ws.send(Buffer.from([4, down, 0, 0, 0, 0, 0xff, 0xe1]))
    const next = answer()
    a.ws.send(Buffer.from([3, 0, 0, 0, 0, 0, 0, 1, 0, 1]))
    await Promise.race([next, bEnd, a.closed])
  }
  const endB = await bEnd
  assert.equal(endB.code, 4007, `B closed as idle (${endB.code} ${endB.reason})`)
  assert.equal(closedEarly, undefined, 'input kept A open past its idle timeout')
  assert.ok(await defined(cloneA), 'A\'s VM lives on')
  await waitFor(async () => !await defined(cloneB), 60_000, 'the idle clone B to be destroyed', 200)
  // Then nothing on A either: the gateway closes it as idle, and its VM goes.
  const end = await within(a.closed, idle * 1000 + 30_000, 'the idle close')
  assert.equal(end.code, 4007, `closed as idle (${end.code} ${end.reason})`)
  await waitFor(async () => !await defined(cloneA), 60_000, 'the idle clone to be destroyed', 200)
})

test('a PATCH of size or timeouts keeps the warm clones (the same domain still runs, says libvirt) and the pool follows its new size', async (t) => {
  const p = await pool(t, { size: 1 })
  await readyPool(p.name, 1)
  const [first] = await poolDomains(p.name)
  assert.ok(first !== undefined)
  const before = (await stack.api('GET', `/v1/pools/${p.name}`)).body.generation as number
  const r = await stack.api('PATCH', `/v1/pools/${p.name}`, { size: 2, idleTimeoutSeconds: 120 })
  assert.equal(r.status, 200, JSON.stringify(r.body))
  assert.equal(r.body.generation, before, 'no new generation: the template is not checked again')
  await readyPool(p.name, 2)
  const now = await poolDomains(p.name)
  assert.ok(now.includes(first), `the warm clone ${first} was kept: ${now.join(', ')}`)
  assert.equal(await virsh('domstate', first), 'running')
  assert.equal(now.length, 2)
})

test('200 concurrent hand-outs against a pool of 4: 4 distinct VMs, the rest 503, never a VM twice', async (t) => {
  // Refill starts with the first hand-out; the slow hook keeps new clones from being ready during the burst.
  const p = await pool(t, { size: 4, hooks: ['slow'] })
  await readyPool(p.name, 4)
  const warm = new Set(await poolDomains(p.name))
  assert.equal(warm.size, 4)
  const answers = await Promise.all(Array.from({ length: 200 }, async () => await handOut(p.name, acme.customerKey)))
  const ok = answers.filter(a => a.status === 201)
  const refused = answers.filter(a => a.status === 503)
  assert.equal(ok.length + refused.length, 200, `hand-outs: ${JSON.stringify(answers.map(a => a.status))}`)
  // Each warm clone went to exactly one request; a clone refilled during the burst (should the machine be
  // that slow) may have gone to one more, never to two.
  const handed = await Promise.all(ok.map(async a => (await stack.api('GET', `/v1/servers/${a.body.serverId}`)).body.name as string))
  assert.deepEqual(handed.filter(n => warm.has(n)).sort(), [...warm].sort(), 'every warm clone handed out once')
  assert.equal(new Set(handed).size, handed.length, 'no clone handed out twice')
  assert.equal(ok.length, 4 + handed.filter(n => !warm.has(n)).length)
  // The API's metrics count them: hits and misses of this pool.
  const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text()
  const count = (outcome: string): number => Number(new RegExp(`porthole_pool_handouts_total\\{pool="${p.name}",outcome="${outcome}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0)
  assert.equal(count('hit'), ok.length)
  assert.equal(count('miss'), refused.length)
  assert.ok(refused.every(a => Number(a.headers.get('retry-after')) >= 1), 'each 503 says when to come back')
  assert.equal(new Set(ok.map(a => a.body.serverId)).size, 4, 'four distinct VMs')
  assert.equal(new Set(ok.map(a => a.body.sessionId)).size, 4)
  // Each is a clone libvirt runs, and each console reaches its own one.
  const names = new Set<string>()
  for (const a of ok) {
    const v = await live(t, a.body.url)
    names.add(v.name)
    v.ws.terminate()
  }
  assert.equal(names.size, 4, 'four distinct desktops')
})
