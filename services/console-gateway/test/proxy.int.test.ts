/**
 * The gateway behind a reverse proxy that serves it under a path prefix and strips the prefix (as a
 * TLS-terminating proxy would, minus the TLS): PUBLIC_GATEWAY_URL carries the prefix, the page and its
 * WebSocket work through the proxy with relative URLs only, and an idle console is closed.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request, type Server } from 'node:http'
import { connect } from 'node:net'
import { freePort, tinyDomain, type TinyDomain } from '@porthole/testkit'
import { fileScope, harness, launchChromium, vncTarget, type Harness } from './support.js'

const PREFIX = '/console-gw'
const suite = fileScope(after)
let h: Harness
let vm: TinyDomain
let proxy: Server
let proxyPort = 0
const seen: string[] = []

function startProxy (upstream: () => URL): Server {
  const strip = (url: string | undefined): string | undefined => url?.startsWith(PREFIX + '/') === true ? url.slice(PREFIX.length) : undefined
  const s = createServer((req, res) => {
    const path = strip(req.url)
    seen.push(req.url ?? '')
    if (path === undefined) { res.writeHead(404).end(); return }
    const up = upstream()
    const fwd = request({ host: up.hostname, port: up.port, method: req.method, path, headers: { ...req.headers, 'x-forwarded-for': '203.0.113.9' } }, r => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.pipe(res)
    })
    fwd.on('error', () => res.destroy())
    req.pipe(fwd)
  })
  s.on('upgrade', (req, sock, head) => {
    seen.push(req.url ?? '')
    const path = strip(req.url)
    if (path === undefined) { sock.destroy(); return }
    const up = upstream()
    const c = connect(Number(up.port), up.hostname, () => {
      const lines = [`${req.method ?? 'GET'} ${path} HTTP/1.1`]
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`)
      lines.push('X-Forwarded-For: 203.0.113.9')
      c.write(lines.join('\r\n') + '\r\n\r\n')
      c.write(head)
      sock.pipe(c).pipe(sock)
    })
    c.on('error', () => sock.destroy())
    sock.on('error', () => c.destroy())
  })
  return s
}

before(async () => {
  proxyPort = await freePort()
  let stackUrl = ''
  proxy = startProxy(() => new URL(stackUrl))
  await new Promise<void>(resolve => proxy.listen(proxyPort, '127.0.0.1', resolve))
  suite.after(async () => { proxy.closeAllConnections(); await new Promise<void>(resolve => proxy.close(() => resolve())) })
  ;[h, vm] = await Promise.all([
    harness(suite, { envFor: { 'console-gateway': { PUBLIC_GATEWAY_URL: `http://127.0.0.1:${proxyPort}${PREFIX}`, CONSOLE_IDLE_SECONDS: '4', TRUST_PROXY: 'true' } } }),
    tinyDomain(suite, { vncPassword: 's3cret' })
  ])
  stackUrl = h.stack.gatewayUrl
})

test('behind a prefix-stripping proxy the console works, and closes after the idle time without input', async (t) => {
  const m = await h.mint({ target: await vncTarget(await vm.vncPort(), 's3cret') })
  assert.ok(m.grant.url.startsWith(`http://127.0.0.1:${proxyPort}${PREFIX}/s/${m.sessionId}#`))
  const browser = await launchChromium(t)
  {
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', e => errors.push(e.message))
    page.on('response', r => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`) })
    await page.goto(m.grant.url)
    await page.waitForSelector('body[data-connected="true"]', { timeout: 10_000 })
    const connectedAt = Date.now()
    assert.ok(seen.includes(`${PREFIX}/s/${m.sessionId}/ws`), 'the WebSocket went through the proxy, under the prefix')
    assert.ok(seen.every(u => u.startsWith(PREFIX + '/')), 'every request stayed under the prefix')
    assert.deepEqual(errors, [])
    // noVNC keeps asking for screen updates; that is not input, so the idle timeout runs.
    await page.waitForSelector('body[data-close-reason="idle"]', { timeout: 10_000 })
    // The reason the page shows is the gateway's (4007 idle); the timing itself is the relay tests' business.
    t.diagnostic(`closed as idle ${Date.now() - connectedAt} ms after connecting (CONSOLE_IDLE_SECONDS=4)`)
    const logs = h.stack.logs()
    assert.ok(logs.includes('"ip":"203.0.113.9"'), 'TRUST_PROXY takes the client address from X-Forwarded-For')
    assert.ok(!logs.includes(m.token))
  }
})
