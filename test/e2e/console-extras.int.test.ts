// Renewal and shares through the whole system, for a real VM: a console renewed through the API keeps its
// socket past its first expiry; a share the API makes opens the same VM's screen at the gateway; revoking
// the session through the API ends the owner's socket and the share's.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import { CONSOLE_CLOSE } from '@porthole/contracts'
import { tinyDomain, waitFor } from '@porthole/testkit'
import { fileStack, kvmServer, tenant } from './fixtures.js'

const stack = await fileStack()
const acme = await tenant(stack)

interface Rfb { ws: WebSocket, name: string, closed: Promise<number> }

/** Opens a console URL's socket as the page does and completes the RFB handshake: the desktop name of ServerInit comes from the VM. */
async function rfbOpen (url: string): Promise<Rfb> {
  const u = new URL(url)
  const ws = new WebSocket(`ws://${u.host}${u.pathname}/ws`, ['binary', `porthole.token.${u.hash.slice(1)}`], { headers: { origin: u.origin } })
  const closed = new Promise<number>(resolve => ws.once('close', (code) => resolve(code)))
  let buf = Buffer.alloc(0)
  let wake: (() => void) | undefined
  ws.on('message', (b: Buffer) => { buf = Buffer.concat([buf, b]); wake?.() })
  const read = async (n: number): Promise<Buffer> => {
    while (buf.length < n) await Promise.race([new Promise<void>(resolve => { wake = resolve }), closed.then((c) => { throw new Error(`closed ${c}`) })])
    const out = buf.subarray(0, n)
    buf = buf.subarray(n)
    return out
  }
  await read(12)
  ws.send(Buffer.from('RFB 003.008\n'))
  await read((await read(1))[0] as number) // the security types offered
  ws.send(Buffer.from([1]))
  assert.equal((await read(4)).readUInt32BE(0), 0)
  ws.send(Buffer.from([1]))
  const init = await read(24)
  return { ws, closed, name: (await read(init.readUInt32BE(20))).toString('utf8') }
}

test('renewed through the API, a console outlives its first expiry; a share the API makes shows the same VM; revoking ends both', async (t) => {
  const dom = await tinyDomain(t, { vncPassword: 'extras12' })
  const id = await kvmServer(stack, acme.tenantId, dom)
  const r = await stack.api('POST', `/v1/servers/${id}/console`, { ttlSeconds: 10, renewable: true }, { key: acme.customerKey })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  const owner = await rfbOpen(r.body.url)
  assert.ok(owner.name.includes(dom.name), `the VM's own desktop name: ${owner.name}`)
  const first = Date.parse(r.body.expiresAt)

  const renewed = await stack.api('POST', `/v1/console-sessions/${r.body.sessionId}/renew`, { ttlSeconds: 600 }, { key: acme.customerKey })
  assert.equal(renewed.status, 200, JSON.stringify(renewed.body))
  assert.ok(Date.parse(renewed.body.expiresAt) > first + 500_000)
  await waitFor(() => stack.logLines.some(l => l.includes(r.body.sessionId) && l.includes('viewer kept until its new expiry')), 30_000, 'the first expiry to pass with the viewer kept')
  assert.equal(owner.ws.readyState, WebSocket.OPEN, 'the socket is open past its first expiry')
  const view = await stack.api('GET', `/v1/console-sessions/${r.body.sessionId}`, undefined, { key: acme.customerKey })
  assert.equal(view.body.expiresAt, renewed.body.expiresAt)
  assert.equal(view.body.renewable, true)

  const shared = await stack.api('POST', `/v1/console-sessions/${r.body.sessionId}/share`, { label: 'support' }, { key: acme.customerKey })
  assert.equal(shared.status, 201, JSON.stringify(shared.body))
  assert.ok(String(shared.body.url).startsWith(`${stack.gatewayUrl}/s/${r.body.sessionId}#`))
  const watcher = await rfbOpen(shared.body.url)
  assert.equal(watcher.name, owner.name, 'the share shows the same VM')
  assert.equal(owner.ws.readyState, WebSocket.OPEN, 'the share did not replace the owner')

  assert.equal((await stack.api('DELETE', `/v1/console-sessions/${r.body.sessionId}`, undefined, { key: acme.customerKey })).status, 204)
  assert.deepEqual(await Promise.all([owner.closed, watcher.closed]), [CONSOLE_CLOSE.revoked.code, CONSOLE_CLOSE.revoked.code])
})
