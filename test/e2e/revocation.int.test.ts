// Revocation that bites, through the whole system with a real VM console: suspending a tenant closes its
// live console socket, deleting a key closes the consoles that key opened (and only those).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import { tinyDomain } from '@porthole/testkit'
import { fileStack, kvmServer, tenant } from './fixtures.js'

const stack = await fileStack()

interface Viewer { ws: WebSocket, closed: Promise<number> }

/** Opens the console's WebSocket as the page does and waits for the VM's first RFB bytes; stays open. */
async function view (url: string): Promise<Viewer> {
  const u = new URL(url)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${u.hash.slice(1)}`], { headers: { origin: u.origin } })
  const closed = new Promise<number>(resolve => ws.once('close', (code) => resolve(code)))
  ws.on('error', () => {})
  const first = await new Promise<string>((resolve, reject) => {
    ws.once('message', (b: Buffer) => resolve(b.toString('latin1')))
    void closed.then(code => reject(new Error(`closed ${code}`)))
  })
  assert.match(first, /^RFB 003\.00[378]\n/)
  return { ws, closed }
}

async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms) })])
  } finally { clearTimeout(t) }
}

test('suspending a tenant closes its live console socket and refuses its key; resume restores', async (t) => {
  const acme = await tenant(stack, 'suspended-co')
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const r = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  const viewer = await view(r.body.url)
  t.after(() => { viewer.ws.terminate() })

  const s = await stack.api('POST', `/v1/tenants/${acme.tenantId}/suspend`)
  assert.equal(s.status, 200, JSON.stringify(s.body))
  // The gateway holding the socket hears of the revocation and closes it (the contract: within a second).
  await within(viewer.closed, 5000, 'socket close')
  const refused = await stack.api('GET', `/v1/servers/${id}`, undefined, { key: acme.customerKey })
  assert.equal(refused.status, 403)
  assert.match(refused.body.detail, /suspended/)
  const sessions = await stack.api('GET', `/v1/console-sessions?serverId=${id}`)
  assert.ok(sessions.body.every((x: { revokedAt?: string }) => x.revokedAt !== undefined))

  assert.equal((await stack.api('POST', `/v1/tenants/${acme.tenantId}/resume`)).status, 200)
  const again = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(again.status, 201, JSON.stringify(again.body))
  const second = await view(again.body.url)
  second.ws.close()
  await second.closed
})

test('deleting an API key closes the consoles it opened, not those of other keys', async (t) => {
  const acme = await tenant(stack, 'key-co')
  const k = await stack.api('POST', '/v1/api-keys', { tenantId: acme.tenantId, role: 'customer', name: 'short-lived' })
  assert.equal(k.status, 201)
  const dom = await tinyDomain(t)
  const id = await kvmServer(stack, acme.tenantId, dom)
  const mine = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 600 }, { key: k.body.key })
  const theirs = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(mine.status, 201, JSON.stringify(mine.body))
  assert.equal(theirs.status, 201, JSON.stringify(theirs.body))
  const a = await view(mine.body.url)
  const b = await view(theirs.body.url)
  t.after(() => { a.ws.terminate(); b.ws.terminate() })

  assert.equal((await stack.api('DELETE', `/v1/api-keys/${k.body.id}`)).status, 204)
  await within(a.closed, 5000, 'socket close')
  const left = await stack.api('GET', `/v1/console-sessions/${theirs.body.sessionId}`)
  assert.equal(left.body.revokedAt, undefined)
  assert.equal(b.ws.readyState, WebSocket.OPEN, "the other key's console stays open")
})
