// GET /v1/events: a client that stops reading is dropped once about 1 MiB waits for it, and nobody else is.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { request, type IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { keys } from '@porthole/shared/store'
import { waitFor } from '@porthole/testkit'
import { startTestApi } from './helpers.js'

const BATCH = 2000
/** About 27 MB of events: far beyond the guard plus what the kernel's socket buffers hold on loopback. */
const MAX_BATCHES = 60

test('an event-stream client that never reads is closed; a reading one keeps its stream', async (t) => {
  const api = await startTestApi(t)
  await api.app.listen({ host: '127.0.0.1', port: 0 })
  const port = (api.app.server.address() as AddressInfo).port
  const auth = `Bearer ${api.adminToken}`

  // The reader consumes everything.
  let text = ''
  let received = 0
  let last = ''
  const reader = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: auth } }, resolve)
    req.on('error', reject)
    req.end()
  })
  api.defer(async () => { reader.destroy() })
  assert.equal(reader.statusCode, 200)
  reader.setEncoding('utf8')
  reader.on('data', (c: string) => {
    text += c
    // keep only the unfinished tail: the reader sees megabytes
    const parts = text.split('\n\n')
    text = parts.pop() ?? ''
    for (const p of parts) if (p.includes('event: job\n')) { received++; last = p }
  })
  let readerClosed = false
  reader.once('close', () => { readerClosed = true })

  // The slow client asks, then never reads: no 'data' listener, so once its small read buffer is full
  // node stops reading the socket and the kernel's buffers fill up behind it.
  const slow: Socket = connect(port, '127.0.0.1')
  api.defer(async () => { slow.destroy() })
  let slowClosed = false
  slow.once('close', () => { slowClosed = true })
  slow.on('error', () => {})
  slow.write(`GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\n\r\n`)
  await waitFor(() => slow.readableLength > 0, 3000, 'the slow client\'s response to start')
  assert.match(String(slow.read(slow.readableLength)), /^HTTP\/1\.1 200/)

  // Straight into the event stream (store/events.ts), as the job store's scripts append.
  const stream = keys(api.ns).eventStream
  const tenantId = randomUUID()
  const serverId = randomUUID()
  const event = (): string => JSON.stringify({ jobId: randomUUID(), tenantId, serverId, kind: 'power', state: 'running', at: new Date().toISOString() })
  const dropped = (): boolean => api.logLines.some(l => l.includes('event stream client too slow; closed'))
  let published = 0
  for (let b = 0; b < MAX_BATCHES && !dropped(); b++) {
    const pipe = api.redis.pipeline()
    for (let i = 0; i < BATCH; i++) pipe.xadd(stream, '*', 'type', 'job', 'data', event())
    await pipe.exec()
    published += BATCH
    // The reader drains each batch before the next, so only the slow client has anything waiting.
    await waitFor(() => received === published, 10_000, `the reader to get ${published} events (has ${received})`)
  }
  assert.ok(dropped(), `the slow client was not dropped after ${published} events (${(published * 230 / 1e6).toFixed(0)} MB)`)

  // The server closed the slow client's connection: it sees the end once it reads what was sent before.
  slow.resume()
  await waitFor(() => slowClosed, 10_000, 'the slow client\'s connection to close')

  // The reader's stream goes on, and new clients are served.
  assert.equal(readerClosed, false)
  const marker = randomUUID()
  await api.redis.xadd(stream, '*', 'type', 'job', 'data', JSON.stringify({ jobId: marker, tenantId, serverId, kind: 'power', state: 'succeeded', at: new Date().toISOString() }))
  await waitFor(() => received === published + 1, 5000, 'the reader to get the event after the drop')
  assert.ok(last.includes(marker))
  const late = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: auth } }, resolve)
    req.on('error', reject)
    req.end()
  })
  api.defer(async () => { late.destroy() })
  assert.equal(late.statusCode, 200)
  let lateText = ''
  late.setEncoding('utf8')
  late.on('data', (c: string) => { lateText += c })
  await waitFor(() => lateText.includes(': connected'), 3000, 'a new stream to open')
})
