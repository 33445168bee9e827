/**
 * oVirt engine URLs as users write them, end to end against the simulator: the API stores `…/ovirt-engine/api`
 * and `…/ovirt-engine/` as the engine's base, records stored before it did so still work, and the engine sees
 * every request at its right path (the simulator answers any other path 404, as the engine does).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { StoredOvirtServer } from '@porthole/contracts'
import { pipeline, type Pipeline } from '@porthole/testkit'
import { startOvirtSimulator, type OvirtSimulator } from '@porthole/testkit/ovirt'

/** The engine URL an ovirt server's record holds in Redis. */
async function storedUrl (p: Pipeline, id: string): Promise<string | undefined> {
  return (await p.servers.get(id) as StoredOvirtServer | undefined)?.connection.url
}

async function setup (t: TestContext): Promise<{ p: Pipeline, sim: OvirtSimulator }> {
  const sim = await startOvirtSimulator(t, { transitionMs: 50 })
  const p = await pipeline(t, { services: ['api', 'receiver', 'agents'], envFor: { agents: { AGENT_TYPES: 'ovirt' } } })
  return { p, sim }
}

/** Registers the simulator's VM through the API with the engine URL written as `url`; the server's id. */
async function createServer (p: Pipeline, sim: OvirtSimulator, vmId: string, url: string): Promise<string> {
  const created = await p.stack.api('POST', '/v1/servers', {
    name: 'engine-vm', tenantId: p.tenantId, agent: 'ovirt',
    connection: { url, username: sim.username, password: sim.password, vmId, caCert: sim.caCert }
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  assert.equal(created.body.connection.url, sim.url, `${url} is shown as the engine's base`)
  return created.body.id as string
}

/** A power action through the API that succeeds, and the VM's status the engine then holds. */
async function powerThrough (p: Pipeline, sim: OvirtSimulator, id: string, vmId: string, action: 'on' | 'off'): Promise<string | undefined> {
  const r = await p.stack.api('POST', `/v1/servers/${id}/power?wait=20`, { action })
  assert.equal(r.body.state, 'succeeded', JSON.stringify(r.body))
  return sim.vm(vmId)?.status
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
    const id = await createServer(p, sim, vm.id, url)
    assert.equal(await storedUrl(p, id), sim.url, `${url} is stored as the engine's base`)

    const status = await p.stack.api('GET', `/v1/servers/${id}/status?wait=20`)
    assert.equal(status.status, 200, JSON.stringify(status.body))
    assert.equal(status.body.power, 'off')
    assert.equal(await powerThrough(p, sim, id, vm.id, 'on'), 'up', 'the engine started the VM')
  }
  rightPaths(sim)
})

test('a PATCH with the /api form stores the base too', async (t) => {
  const { p, sim } = await setup(t)
  const vm = sim.addVm({ status: 'up' })
  const id = await createServer(p, sim, vm.id, sim.url)
  const patched = await p.stack.api('PATCH', `/v1/servers/${id}`, { connection: { url: `${sim.url}/api/` } })
  assert.equal(patched.status, 200, JSON.stringify(patched.body))
  assert.equal(await storedUrl(p, id), sim.url)
  assert.equal(await powerThrough(p, sim, id, vm.id, 'off'), 'down', 'the engine stopped the VM')
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
