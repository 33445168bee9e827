// KVM_ALLOWED_URIS: when a deployment lists its libvirt URIs, a kvm connection standing for any other URI,
// however well-formed, is refused by the API (naming the member) and, written straight into Redis, by the
// agent (a failed job with code invalid) before libvirt is asked anything.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { TEST_LIBVIRT_URI, pipeline, tinyDomain, type Pipeline } from '@porthole/testkit'

const cleanups: Array<() => Promise<void>> = []
let p: Pipeline
let port: number
let dialled = 0
/** A libvirt endpoint that is not on the list: it counts who connects, and answers nothing. */
const listener = createServer(s => { dialled++; s.destroy() })
before(async () => {
  await new Promise<void>(resolve => listener.listen(0, '127.0.0.1', resolve))
  port = (listener.address() as { port: number }).port
  p = await pipeline({ after: fn => cleanups.unshift(fn) }, { services: ['api', 'receiver', 'agents'], env: { KVM_ALLOWED_URIS: TEST_LIBVIRT_URI } })
})
after(async () => {
  for (const fn of cleanups) await fn()
  await new Promise(resolve => listener.close(resolve))
})

test('a URI off the list is refused by the API, naming the member', async () => {
  const uri = `qemu+tcp://127.0.0.1:${port}/system`
  const r = await p.stack.api('POST', '/v1/servers', { name: 'off-list', tenantId: p.tenantId, agent: 'kvm', connection: { uri, domain: 'x' } })
  assert.equal(r.status, 400, JSON.stringify(r.body))
  assert.equal(r.body.field, 'connection.uri')
  assert.match(r.body.detail, /KVM_ALLOWED_URIS/)
  const s = await p.stack.api('POST', '/v1/servers', { name: 'off-list', tenantId: p.tenantId, agent: 'kvm', connection: { transport: 'tcp', host: '127.0.0.1', port, domain: 'x' } })
  assert.equal(s.status, 400, JSON.stringify(s.body))
  assert.equal(s.body.field, 'connection.host')
  assert.match(s.body.detail, /KVM_ALLOWED_URIS/)
})

test('a record off the list written straight into Redis fails as invalid, and libvirt never dials it', async (t) => {
  const vm = await tinyDomain(t)
  const listed = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const offList = await p.addServer('kvm', { uri: `qemu+tcp://127.0.0.1:${port}/system`, domain: 'x' })
  const structured = await p.addServer('kvm', { transport: 'tcp', host: '127.0.0.1', port, domain: 'x' })
  const [ok, bad, bad2] = await Promise.all([listed, offList, structured].map(async s => await p.finished((await p.submit(s, 'status')).id, 30_000)))
  assert.equal(ok?.state, 'succeeded', JSON.stringify(ok))
  assert.equal(await vm.state(), 'running')
  for (const r of [bad, bad2]) {
    assert.equal(r?.state, 'failed', JSON.stringify(r))
    assert.equal(r?.error?.code, 'invalid', JSON.stringify(r?.error))
    assert.match(r?.error?.message ?? '', /KVM_ALLOWED_URIS/)
  }
  assert.equal(dialled, 0, 'libvirt connected to a URI off the list')
})
