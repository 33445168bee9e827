import { test } from 'node:test'
import assert from 'node:assert/strict'
import { at, pipeline, states, tinyDomain, waitFor } from '@porthole/testkit'

test('on SIGTERM the agents let a running action finish and report before they exit', async (t) => {
  // A tiny guest ignores ACPI: "shutdown" waits KVM_SHUTDOWN_WAIT_MS, then fails with timeout.
  // Longer than the 5 s the agents used to allow, shorter than the test stack's 10 s before SIGKILL.
  const p = await pipeline(t, { envFor: { agents: { KVM_SHUTDOWN_WAIT_MS: '6500' } } })
  const vm = await tinyDomain(t)
  const server = await p.addServer('kvm', { uri: vm.uri, domain: vm.name })
  const job = await p.submit(server, 'power', { action: 'shutdown', deadlineMs: 30_000 })
  await waitFor(async () => (await p.jobs.get(job.id))?.state === 'running', 10_000, 'the action to start')
  await p.stack.stop('agents') // SIGTERM, and wait for the process to exit
  const r = await p.finished(job.id, 5000)
  // The agent's own answer ("failed" with code timeout), not a job left to time out at its deadline.
  assert.equal(r.state, 'failed', JSON.stringify(r))
  assert.equal(r.error?.code, 'timeout')
  assert.deepEqual(states(r), ['queued', 'dispatched', 'running', 'failed'])
  // libvirt agrees: the guest ignored the ACPI request and still runs (the report is true, not a cut-off).
  assert.equal(await vm.state(), 'running')
  // The action ran its whole ACPI wait through the stop (the agent's own timestamps in the job's history: a
  // configured minimum, which a slower machine only lengthens), and its report came before the agents' last line.
  assert.ok(at(r, 'failed') - at(r, 'running') >= 6400, `failed ${at(r, 'failed') - at(r, 'running')} ms after it started running`)
  const agentLines = p.stack.logLines.filter(l => l.includes('"service":"agents"'))
  const reported = agentLines.findIndex(l => l.includes(job.id) && l.includes('"msg":"job failed"'))
  const stopped = agentLines.findIndex(l => l.includes('"msg":"stopped"'))
  assert.ok(stopped !== -1, 'a clean exit')
  assert.ok(reported !== -1 && reported < stopped, `the job was reported (line ${reported}) before the agents stopped (line ${stopped})`)
})
