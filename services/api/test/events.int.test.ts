import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { waitFor } from '@porthole/testkit'
import { startTestApi, twoTenants } from './helpers.js'

test('GET /v1/events streams job events of the caller\'s tenant, with heartbeats', async (t) => {
  const api = await startTestApi(t, { env: { SSE_HEARTBEAT_SECONDS: '1' } })
  const { a, b, sa, sb } = await twoTenants(api)
  await api.app.listen({ host: '127.0.0.1', port: 0 })
  const port = (api.app.server.address() as AddressInfo).port

  let text = ''
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: `Bearer ${a.key}` } }, resolve)
    req.on('error', reject)
    req.end()
  })
  t.after(() => { res.destroy() })
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['content-type']), /^text\/event-stream/)
  res.setEncoding('utf8')
  res.on('data', (c: string) => { text += c })
  await waitFor(() => text.includes(': connected'), 3000, 'the stream to open')

  const ja = await api.call('POST', `/v1/servers/${sa}/power`, { action: 'on' }, { key: a.key })
  const jb = await api.call('POST', `/v1/servers/${sb}/power`, { action: 'on' }, { key: b.key })
  await api.jobs.transition(ja.body.id, 'dispatched')
  await api.jobs.transition(jb.body.id, 'dispatched')
  // A terminal event carries the job's final record inside the services (agent messages and all): the stream
  // must send only the event's own fields.
  await api.jobs.transition(ja.body.id, 'failed', { error: { code: 'connection', message: 'BMC 10.9.8.7 did not answer', retryable: true } })
  await waitFor(() => text.includes('"state":"failed"'), 3000, 'the failed event')
  await waitFor(() => text.includes(': heartbeat'), 3000, 'a heartbeat')
  const events = text.split('\n\n').filter(b => b.startsWith('event: job')).map(b => JSON.parse(b.split('\ndata: ')[1] ?? '{}'))
  assert.deepEqual(events.map(e => [e.jobId, e.state]), [[ja.body.id, 'queued'], [ja.body.id, 'dispatched'], [ja.body.id, 'failed']])
  for (const e of events) assert.deepEqual(Object.keys(e).sort(), ['at', 'jobId', 'kind', 'serverId', 'state', 'tenantId'])
  assert.ok(!text.includes('10.9.8.7'))
  assert.ok(!text.includes(jb.body.id), "another tenant's job never appears")
})
