// Every lifecycle action through the whole system (API → RabbitMQ → receiver → kvm agent → libvirt → Redis),
// checked against what libvirt itself reports.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { tinyDomain } from '@porthole/testkit'
import { domId, fileStack, kvmServer, power, tenant } from './fixtures.js'

const stack = await fileStack({ envFor: { agents: { KVM_SHUTDOWN_WAIT_MS: '1500' } } })
const acme = await tenant(stack)

test('off, on, suspend and resume change the VM as libvirt reports, with every state timestamped', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const key = acme.customerKey

  const off = await power(stack, id, 'off', key)
  assert.equal(off.state, 'succeeded', JSON.stringify(off))
  assert.equal(await dom.state(), 'shut off')
  assert.equal(off.result.power, 'off')
  assert.deepEqual(off.history.map((h: { state: string }) => h.state), ['queued', 'dispatched', 'running', 'succeeded'])
  const times = off.history.map((h: { at: string }) => Date.parse(h.at))
  assert.deepEqual([...times].sort((a, b) => a - b), times)

  assert.equal((await power(stack, id, 'on', key)).state, 'succeeded')
  assert.equal(await dom.state(), 'running')
  assert.equal((await power(stack, id, 'suspend', key)).result.power, 'paused')
  assert.equal(await dom.state(), 'paused')
  assert.equal((await power(stack, id, 'resume', key)).result.power, 'on')
  assert.equal(await dom.state(), 'running')
})

test('"on" for a running VM does not restart it; reset does', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const before = await domId(dom)
  const on = await power(stack, id, 'on')
  assert.equal(on.state, 'succeeded')
  assert.equal(on.result.changed, false)
  assert.equal(await domId(dom), before)
  const reset = await power(stack, id, 'reset')
  assert.equal(reset.state, 'succeeded')
  assert.equal(await dom.state(), 'running')
  assert.notEqual(await domId(dom), before)
})

test('reboot of a guest that ignores ACPI escalates and the VM runs again; shutdown of it fails as a timeout and leaves it running', async (t) => {
  const dom = await tinyDomain(t) // diskless: no OS answers the ACPI request
  const id = await kvmServer(stack, acme.tenantId, dom)
  const before = await domId(dom)
  const reboot = await power(stack, id, 'reboot')
  assert.equal(reboot.state, 'succeeded', JSON.stringify(reboot))
  assert.equal(await dom.state(), 'running')
  assert.notEqual(await domId(dom), before)

  const shutdown = await power(stack, id, 'shutdown')
  assert.equal(shutdown.state, 'failed', JSON.stringify(shutdown))
  assert.equal(shutdown.error.code, 'timeout')
  assert.equal(await dom.state(), 'running')
})

test('status matches libvirt when running, paused and off', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const status = async (): Promise<string> => {
    const r = await stack.api('GET', `/v1/servers/${id}/status`, undefined, { key: acme.customerKey })
    assert.equal(r.status, 200, JSON.stringify(r.body))
    assert.ok(!Number.isNaN(Date.parse(r.body.checkedAt)))
    return r.body.power
  }
  assert.equal(await dom.state(), 'running')
  assert.equal(await status(), 'on')
  await power(stack, id, 'suspend')
  assert.equal(await dom.state(), 'paused')
  assert.equal(await status(), 'paused')
  await power(stack, id, 'off')
  assert.equal(await dom.state(), 'shut off')
  assert.equal(await status(), 'off')
})

test('two power jobs for one server run one after the other', async (t) => {
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const before = Number(await domId(dom))
  const [a, b] = await Promise.all(['reset', 'reset'].map(async (action) => await stack.api('POST', `/v1/servers/${id}/power`, { action })))
  assert.equal(a?.status, 202); assert.equal(b?.status, 202)
  const { finished } = await import('./fixtures.js')
  const ja = await finished(stack, a?.body.id); const jb = await finished(stack, b?.body.id)
  assert.equal(ja.state, 'succeeded'); assert.equal(jb.state, 'succeeded')
  const at = (j: { history: Array<{ state: string, at: string }> }, s: string): number => Date.parse(j.history.find(h => h.state === s)?.at ?? '')
  const [first, second] = at(ja, 'dispatched') < at(jb, 'dispatched') ? [ja, jb] : [jb, ja]
  assert.ok(at(second, 'dispatched') >= at(first, 'succeeded'), 'the second job was dispatched before the first ended')
  // libvirt numbers each start of a domain: two resets are two restarts, neither lost in the other.
  assert.ok(Number(await domId(dom)) >= before + 2, 'libvirt saw fewer than two restarts')
  assert.equal(await dom.state(), 'running')
})
