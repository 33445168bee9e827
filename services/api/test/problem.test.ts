import { test } from 'node:test'
import assert from 'node:assert/strict'
import { jobFailureError, problem, PROBLEM_TYPE_BASE } from '../src/problem.js'

test('a failed job maps to the status of its error code, with the job id', () => {
  const cases: Array<[string, number]> = [['conflict', 409], ['not_found', 404], ['connection', 502], ['auth', 502], ['action', 502], ['timeout', 504], ['unsupported', 422], ['busy', 429], ['unavailable', 503], ['internal', 500]]
  for (const [code, status] of cases) {
    const e = jobFailureError('j1', 'failed', { code: code as 'conflict', message: 'm', retryable: false })
    assert.equal(e.status, status, code)
    assert.equal(e.details?.jobId, 'j1')
  }
  assert.equal(jobFailureError('j2', 'timed_out', undefined).status, 504)
})

test('problem bodies carry type, title, status, detail and code', () => {
  const p = problem(404, 'not_found', 'server not found', { jobId: 'x' })
  assert.deepEqual(p, { type: PROBLEM_TYPE_BASE + 'not_found', title: 'Not Found', status: 404, detail: 'server not found', code: 'not_found', jobId: 'x' })
})
