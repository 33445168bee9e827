/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): `webhook-signature: v1,<base64 HMAC-SHA256>`
 * over `<webhook-id>.<webhook-timestamp>.<body>`, keyed with the base64-decoded part of the `whsec_` secret.
 */
import { createHmac, randomBytes } from 'node:crypto'

export const SECRET_PREFIX = 'whsec_'

/** A new webhook secret: `whsec_` and 32 random bytes in base64. */
export function newWebhookSecret (): string { return SECRET_PREFIX + randomBytes(32).toString('base64') }

/** The `webhook-signature` header's value for one message. */
export function webhookSignature (secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`
}
