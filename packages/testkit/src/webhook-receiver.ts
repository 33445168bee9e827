/**
 * A webhook endpoint for tests: an HTTP server on loopback that checks every request's Standard Webhooks
 * signature with the secret it is given (its own reading of the convention, independent of the API's
 * signing code) and answers what the test tells it to.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ReceivedWebhook {
  id: string
  timestamp: number
  signature: string
  /** Whether the signature is right for the secret set when it arrived. */
  verified: boolean
  body: any // eslint-disable-line @typescript-eslint/no-explicit-any
  raw: string
  answered?: number
}

export interface WebhookReceiver {
  url: string
  received: ReceivedWebhook[]
  /** Requests being held open by `hang`. */
  hanging: () => number
  /** The secret signatures are checked with (set it from the registration's answer). */
  secret: string
  /** What to answer each request: a status, or 'hang' to never answer (until close). */
  answer: (r: ReceivedWebhook) => number | 'hang'
  close: () => Promise<void>
}

/** Checks a `webhook-signature` header (space-separated `v1,<base64>` entries) against the secret. */
export function verifyStandardWebhook (secret: string, id: string, timestamp: string, body: string, header: string): boolean {
  if (!secret.startsWith('whsec_')) return false
  const expected = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${timestamp}.${body}`).digest()
  return header.split(' ').some(sig => {
    const [version, b64] = sig.split(',')
    if (version !== 'v1' || b64 === undefined) return false
    const got = Buffer.from(b64, 'base64')
    return got.length === expected.length && timingSafeEqual(got, expected)
  })
}

/** Starts a receiver; `t.after` closes it. */
export async function startWebhookReceiver (t: { after: (fn: () => Promise<void>) => void }): Promise<WebhookReceiver> {
  const held = new Set<ServerResponse>()
  const r: WebhookReceiver = {
    url: '',
    received: [],
    hanging: () => held.size,
    secret: '',
    answer: () => 200,
    close: async () => {
      for (const res of held) res.destroy()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { raw += c })
    req.on('end', () => {
      const id = String(req.headers['webhook-id'] ?? '')
      const ts = String(req.headers['webhook-timestamp'] ?? '')
      const sig = String(req.headers['webhook-signature'] ?? '')
      let body: unknown
      try { body = JSON.parse(raw) } catch { body = undefined }
      const w: ReceivedWebhook = { id, timestamp: Number(ts), signature: sig, verified: verifyStandardWebhook(r.secret, id, ts, raw, sig), body, raw }
      r.received.push(w)
      const a = r.answer(w)
      if (a === 'hang') { held.add(res); res.once('close', () => held.delete(res)); return }
      w.answered = a
      res.writeHead(a, { 'content-type': 'text/plain' }).end('ok')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
  t.after(async () => { await r.close() })
  return r
}
