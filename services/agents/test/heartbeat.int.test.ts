// The agents process's heartbeat (AgentRegistry) as the dashboard reads it: the real agents process beats
// with its types, counts the jobs it finished, shows a job in flight while it acts, and is listed as gone
// (its last contact kept) once it stops.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AgentRegistry } from '@porthole/shared/store'
import { pipeline, tinyDomain, waitFor } from '@porthole/testkit'

test('an agents process beats with its types and jobs, and is listed as gone once stopped', async (t) => {
  const p = await pipeline(t, { envFor: { agents: { AGENT_TYPES: 'kvm', AGENT_HEARTBEAT_SECONDS: '1', KVM_SHUTDOWN_WAIT_MS: '3000' } } })
  const reg = new AgentRegistry(p.redis, p.stack.ns)
  const first = await waitFor(async () => (await reg.list()).find(i => i.alive), 10_000, 'the first heartbeat')
  assert.deepEqual(first.types, ['kvm'])
  assert.equal(first.done, 0)
  assert.ok(first.pid > 0)

  // A shutdown of a diskless guest waits KVM_SHUTDOWN_WAIT_MS for an ACPI answer that never comes: in flight meanwhile.
  const dom = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: dom.uri, domain: dom.name })
  const job = await p.submit(server, 'power', { action: 'shutdown' })
  await waitFor(async () => (await reg.list()).find(i => i.alive && i.inFlight.includes(job.id)), 10_000, 'the job in flight in a beat')
  const rec = await p.finished(job.id)
  assert.equal(rec.state, 'failed')
  await waitFor(async () => (await reg.list()).find(i => i.alive && i.inFlight.length === 0 && i.done === 1), 10_000, 'the job counted done')

  await p.stack.stop('agents')
  const gone = (await reg.list()).find(i => i.instance === first.instance)
  assert.equal(gone?.alive, false, 'a stopped process is listed as gone at once')
  assert.ok(Date.parse(gone.at) >= Date.parse(first.at), 'with its last contact')
})
