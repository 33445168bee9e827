import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { freePort, services, waitFor, within } from '@porthole/testkit'
import { consumeJobs, kvmServer, startTestApi, tenantWithKey } from './helpers.js'

/** A TCP proxy to RabbitMQ that the test opens (and closes) when it likes. */
function proxy (port: number, target: URL): { open: () => Promise<void>, close: () => Promise<void> } {
  let server: Server | undefined
  const sockets = new Set<Socket>()
  return {
    async open () {
      server = createServer(client => {
        const upstream = connect(Number(target.port || 5672), target.hostname)
        for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}) }
        client.pipe(upstream).pipe(client)
      })
      await new Promise<void>(resolve => server?.listen(port, '127.0.0.1', resolve))
    },
    async close () {
      for (const s of sockets) s.destroy()
      if (server !== undefined) await new Promise<void>(resolve => server?.close(() => resolve()))
      server = undefined
    }
  }
}

test('broker down: the API starts, jobs are a 503 at once and left failed; it recovers by itself', { timeout: 60_000 }, async (t) => {
  const svc = await services()
  const port = await freePort()
  const target = new URL(svc.rabbitmqUrl)
  const p = proxy(port, target)
  const url = `amqp://${target.username}:${target.password}@127.0.0.1:${port}`
  const api = await startTestApi(t, { env: { RABBITMQ_URL: url }, waitForBroker: false })
  t.after(async () => { await p.close() }) // after the API has closed its connection through the proxy
  const { tenantId, key } = await tenantWithKey(api)
  const serverId = await kvmServer(api, tenantId)

  const notReady = await api.call('GET', '/readyz', undefined, { key: null })
  assert.equal(notReady.status, 503)
  assert.equal(notReady.body.checks.broker, false)
  assert.equal(notReady.body.checks.redis, true)
  assert.equal((await api.call('GET', '/healthz', undefined, { key: null })).status, 200)

  // The broker stays away for as long as this request may take: only an answer that does not wait for it comes.
  const down = await within(api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key, headers: { 'idempotency-key': 'k-1' } }), 10_000, 'the answer while the broker is down')
  assert.equal(down.status, 503)
  assert.equal(down.headers['retry-after'], '5')
  assert.match(String(down.headers['content-type']), /^application\/problem\+json/)
  assert.equal(down.body.code, 'unavailable')
  const failed = await api.call('GET', `/v1/jobs/${down.body.jobId as string}`, undefined, { key })
  assert.equal(failed.body.state, 'failed')
  assert.equal(failed.body.error.code, 'unavailable')
  assert.equal(failed.body.error.retryable, true)
  assert.equal((await api.call('POST', `/v1/servers/${serverId}/console`, {}, { key })).status, 503)
  assert.equal((await api.call('GET', `/v1/servers/${serverId}/status`, undefined, { key })).status, 503)

  await p.open()
  await waitFor(async () => (await api.call('GET', '/readyz', undefined, { key: null })).status === 200, 15_000, 'readyz after the broker came back')
  const seen = await consumeJobs(api)
  // the same Idempotency-Key works now: the failed attempt did not keep it
  const up = await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'on' }, { key, headers: { 'idempotency-key': 'k-1' } })
  assert.equal(up.status, 202)
  assert.notEqual(up.body.id, down.body.jobId)
  await waitFor(() => seen.length === 1, 5000, 'the job in the queue')

  // the broker goes away again: 503 again, and back again after it returns
  await p.close()
  await waitFor(() => !api.deps.amqp.connected, 15_000, 'the API noticing the broker is gone')
  assert.equal((await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' }, { key })).status, 503)
  await p.open()
  await waitFor(() => api.deps.amqp.connected, 15_000, 'reconnect')
  assert.equal((await api.call('POST', `/v1/servers/${serverId}/power`, { action: 'off' }, { key })).status, 202)
})
