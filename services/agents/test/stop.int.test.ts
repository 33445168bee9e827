import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pipeline, states, tinyDomain, waitFor } from '@porthole/shared/testing'

test('on SIGTERM the agents let a running action finish and report before they exit', async (t) => {
  // A tiny guest ignores ACPI: "shutdown" waits KVM_SHUTDOWN_WAIT_MS, then fails with timeout.
  // Longer than the 5 s the agents used to allow, shorter than the test stack's 10 s before SIGKILL.
  const p = await pipeline(t, { envFor: { agents: { KVM_SHUTDOWN_WAIT_MS: '6500' } } })
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const job = await p.submit(server, 'power', { action: 'shutdown', deadlineMs: 30_000 })
  await waitFor(async () => (await p.jobs.get(job.id))?.state === 'running', 10_000, 'the action to start')
  const t0 = Date.now()
  await p.stack.stop('agents') // SIGTERM, and wait for the process to exit
  const stopMs = Date.now() - t0
  const r = await p.finished(job.id, 5000)
  // The agent's own answer, long before the deadline: not a job left to time out.
  assert.equal(r.state, 'failed', JSON.stringify(r))
  assert.equal(r.error?.code, 'timeout')
  assert.deepEqual(states(r), ['queued', 'dispatched', 'running', 'failed'])
  assert.ok(Date.parse(r.updatedAt) < Date.parse(job.deadline) - 20_000)
  // libvirt agrees: the guest ignored the ACPI request and still runs (the report is true, not a cut-off).
  assert.equal(await vm.state(), 'running')
  assert.ok(stopMs > 5000, `the agents waited for the action (stopped after ${stopMs} ms)`)
  assert.ok(p.stack.logLines.some(l => l.includes('"service":"agents"') && l.includes('"msg":"stopped"')), 'a clean exit')
})
