import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TimeoutError } from '@porthole/contracts/errors'
import { DEADLINE_MARGIN_MS, pollUntil, powerStatus } from '../src/power.js'
import type { AgentContext } from '../src/driver.js'

const ctx = (deadlineMs: number): AgentContext => ({ deadline: new Date(Date.now() + deadlineMs), signal: new AbortController().signal } as unknown as AgentContext)

test('powerStatus sets changed and detail only when given', () => {
  const s = powerStatus('on')
  assert.deepEqual(Object.keys(s).sort(), ['checkedAt', 'power'])
  assert.deepEqual({ ...powerStatus('off', { changed: false, detail: 'x' }), checkedAt: '' }, { power: 'off', checkedAt: '', changed: false, detail: 'x' })
})

test('pollUntil reads until the state is the one wanted and returns it', async () => {
  const states = ['off', 'off', 'on']
  let reads = 0
  const got = await pollUntil(ctx(60_000), { read: async () => states[reads++] ?? 'on', ok: s => s === 'on', pollMs: 1, failure: () => 'never' })
  assert.equal(got, 'on')
  assert.equal(reads, 3)
})

test('pollUntil gives up with the failure it is told, after its wait or by the deadline less the margin', async () => {
  const read = async (): Promise<string> => 'off'
  await assert.rejects(pollUntil(ctx(60_000), { read, ok: s => s === 'on', pollMs: 1, waitMs: 0, failure: (s, when) => `still ${s} ${when}` }),
    (err: unknown) => err instanceof TimeoutError && err.message === 'still off after 0 ms')
  await assert.rejects(pollUntil(ctx(DEADLINE_MARGIN_MS - 100), { read, ok: s => s === 'on', pollMs: 1, failure: (s, when) => `still ${s} ${when}` }),
    (err: unknown) => err instanceof TimeoutError && err.message === 'still off by the job\'s deadline')
})
