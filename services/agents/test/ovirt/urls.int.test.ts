/**
 * oVirt engine URLs as users write them, end to end against the simulator: the API stores `…/ovirt-engine/api`
 * and `…/ovirt-engine/` as the engine's base, records stored before it did so still work, and the engine sees
 * every request at its right path (the simulator answers any other path 404, as the engine does).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { pipeline, type Pipeline } from '@porthole/testkit'
import { startOvirtSimulator, type OvirtSimulator } from '@porthole/testkit/ovirt'

async function setup (t: TestContext): Promise<{ p: Pipeline, sim: OvirtSimulator }> {
  const sim = await startOvirtSimulator(t, { transitionMs: 50 })
  const p = await pipeline(t, { services: ['api', 'receiver', 'agents'], envFor: { agents: { AGENT_TYPES: 'ovirt' } } })
  return { p, sim }
}

/** Every request the simulator saw went to SSO or to the API's VM resources, and none was refused as unknown. */
function rightPaths (sim: OvirtSimulator): void {
  const base = new URL(sim.url).pathname
  for (const r of sim.requests) {
    assert.ok(r.path === `${base}/sso/oauth/token` || r.path.startsWith(`${base}/api/vms/`), `${r.method} ${r.path}`)
    assert.notEqual(r.status, 404, `${r.method} ${r.path} was not found`)
  }
  assert.ok(sim.requests.some(r => r.path.startsWith(`${base}/api/vms/`)), 'the API was called')
}

test('an engine URL written with /api or a trailing slash is stored as the base, and status and power work through it', async (t) => {
  const { p, sim } = await setup(t)
  for (const url of [`${sim.url}/api`, `${sim.url}/api/`, `${sim.url}/`]) {
    const vm = sim.addVm({ status: 'down' })
    const created = await p.stack.api('POST', '/v1/servers', {
      name: 'engine-vm', tenantId: p.tenantId, agent: 'ovirt',
      connection: { url, username: sim.username, password: sim.password, vmId: vm.id, caCert: sim.caCert }
    })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    assert.equal(created.body.connection.url, sim.url, `${url} is shown as the engine's base`)
    assert.equal((await p.servers.get(created.body.id))?.connection.url, sim.url, `${url} is stored as the engine's base`)

    const status = await p.stack.api('GET', `/v1/servers/${created.body.id as string}/status?wait=20`)
    assert.equal(status.status, 200, JSON.stringify(status.body))
    assert.equal(status.body.power, 'off')
    const on = await p.stack.api('POST', `/v1/servers/${created.body.id as string}/power?wait=20`, { action: 'on' })
    assert.equal(on.body.state, 'succeeded', JSON.stringify(on.body))
    assert.equal(sim.vm(vm.id)?.status, 'up', 'the engine started the VM')
  }
  rightPaths(sim)
})

test('a PATCH with the /api form stores the base too', async (t) => {
  const { p, sim } = await setup(t)
  const vm = sim.addVm({ status: 'up' })
  const created = await p.stack.api('POST', '/v1/servers', {
    name: 'engine-vm', tenantId: p.tenantId, agent: 'ovirt',
    connection: { url: sim.url, username: sim.username, password: sim.password, vmId: vm.id, caCert: sim.caCert }
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const patched = await p.stack.api('PATCH', `/v1/servers/${created.body.id as string}`, { connection: { url: `${sim.url}/api/` } })
  assert.equal(patched.status, 200, JSON.stringify(patched.body))
  assert.equal((await p.servers.get(created.body.id))?.connection.url, sim.url)
  const off = await p.stack.api('POST', `/v1/servers/${created.body.id as string}/power?wait=20`, { action: 'off' })
  assert.equal(off.body.state, 'succeeded', JSON.stringify(off.body))
  assert.equal(sim.vm(vm.id)?.status, 'down', 'the engine stopped the VM')
  rightPaths(sim)
})

test('records stored before the API normalised engine URLs still work: the agent reads them in the normal form', async (t) => {
  const { p, sim } = await setup(t)
  for (const url of [`${sim.url}/api`, `${sim.url}/api/`, `${sim.url}/`]) {
    const vm = sim.addVm({ status: 'up' })
    // Straight into Redis, as an earlier version stored what it was given.
    const server = await p.addServer('ovirt', { url, username: sim.username, vmId: vm.id, caCert: sim.caCert }, { connection: { password: sim.password } })
    const status = await p.finished((await p.submit(server, 'status')).id)
    assert.equal(status.state, 'succeeded', JSON.stringify(status))
    assert.equal((status.result as { power?: string } | undefined)?.power, 'on')
    const off = await p.finished((await p.submit(server, 'power', { action: 'off' })).id)
    assert.equal(off.state, 'succeeded', JSON.stringify(off))
    assert.equal(sim.vm(vm.id)?.status, 'down', 'the engine stopped the VM')
  }
  rightPaths(sim)
})
