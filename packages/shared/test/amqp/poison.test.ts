import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { deadLetterPoison } from '../../src/amqp/index.js'
import { Job, compile, type JobFailure } from '@porthole/contracts'
import { createLogger } from '../../src/logging/index.js'

const checkJob = compile(Job, 'job')
const log = createLogger({ name: 'test', level: 'silent' })

test('a poison message that names a job fails it as poison with the schema\'s reason, then is dead-lettered', async () => {
  const failed: Array<[string, JobFailure]> = []
  const id = randomUUID()
  const d = await deadLetterPoison({ id, kind: 'explode' }, checkJob, { fail: async (jobId, error) => { failed.push([jobId, error]) }, log, what: 'job' })
  assert.equal(d, 'dead')
  assert.deepEqual(failed, [[id, { code: 'poison', message: 'invalid job: kind: expected one of "power", "status", "console"', retryable: false }]])
})

test('one that names no job is only dead-lettered; one whose failure cannot be recorded is requeued', async () => {
  let calls = 0
  assert.equal(await deadLetterPoison(undefined, checkJob, { fail: async () => { calls++ }, log, what: 'job' }), 'dead')
  assert.equal(await deadLetterPoison({ id: 'x' }, checkJob, { fail: async () => { calls++ }, log, what: 'job' }), 'dead')
  assert.equal(calls, 0)
  assert.equal(await deadLetterPoison({ job: { id: randomUUID() } }, checkJob, { fail: async () => { throw new Error('redis down') }, log, what: 'agent request' }), 'requeue')
})
