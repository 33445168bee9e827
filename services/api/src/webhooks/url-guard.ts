/**
 * Where a webhook may point. Its host must resolve to public addresses only: loopback, link-local (cloud
 * metadata endpoints live there: 169.254.169.254, fd00:ec2::254), private, shared (CGNAT, also Alibaba's
 * metadata at 100.100.100.200), multicast and reserved ranges are refused unless WEBHOOK_ALLOW_PRIVATE is
 * set. The check is made at registration and again at every delivery, and a delivery connects to the very
 * address it checked (`pinnedLookup`), so a name that resolves elsewhere later (DNS rebinding) gains nothing.
 */
import { lookup } from 'node:dns/promises'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { ValidationError } from '@porthole/contracts/errors'

const blocked = new BlockList()
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]
] as const) blocked.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8]
] as const) blocked.addSubnet(net, bits, 'ipv6')

/** Why `address` may not be called, or undefined when it may. */
export function refusedAddress (address: string): string | undefined {
  const family = isIP(address)
  if (family === 0) return 'not an IP address'
  // IPv4-mapped and -compatible IPv6 (::ffff:10.0.0.1) is the IPv4 address it carries.
  const mapped = /^::(ffff:)?(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped?.[2] !== undefined) return refusedAddress(mapped[2])
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address)
  if (hex?.[1] !== undefined && hex[2] !== undefined) {
    const a = parseInt(hex[1], 16); const b = parseInt(hex[2], 16)
    return refusedAddress(`${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`)
  }
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6') ? 'a loopback, link-local, private or reserved address' : undefined
}

/** A webhook URL's address, checked: connect to `address` (as `pinnedLookup` makes a request do). */
export interface CheckedUrl { url: URL, address: string, family: 4 | 6 }

/** Parses and checks a webhook URL; a ValidationError (problem+json 400) says what is wrong with it. */
export async function checkWebhookUrl (raw: string, allowPrivate: boolean): Promise<CheckedUrl> {
  let url: URL
  try { url = new URL(raw) } catch { throw new ValidationError('url: not an absolute URL', 'url') }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ValidationError('url: only http and https URLs can receive webhooks', 'url')
  if (url.username !== '' || url.password !== '') throw new ValidationError('url: credentials in the URL are not accepted (verify the webhook-signature header instead)', 'url')
  if (url.hash !== '') throw new ValidationError('url: a fragment is never sent; leave it out', 'url')
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  let addresses: Array<{ address: string, family: number }>
  try {
    addresses = isIP(host) !== 0 ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true, verbatim: true })
  } catch {
    throw new ValidationError(`url: the host ${host} does not resolve`, 'url')
  }
  if (addresses.length === 0) throw new ValidationError(`url: the host ${host} does not resolve`, 'url')
  if (!allowPrivate) {
    for (const a of addresses) {
      const why = refusedAddress(a.address)
      if (why !== undefined) throw new ValidationError(`url: ${host} resolves to ${a.address}, ${why}; webhooks go to public addresses only (WEBHOOK_ALLOW_PRIVATE allows others)`, 'url')
    }
  }
  const first = addresses[0] as { address: string, family: number }
  return { url, address: first.address, family: first.family === 6 ? 6 : 4 }
}

/** A `lookup` for http.request that answers with the checked address only. */
export function pinnedLookup (c: CheckedUrl): LookupFunction {
  return ((_host: string, opts: { all?: boolean }, cb: (err: Error | null, address: unknown, family?: number) => void) => {
    if (opts.all === true) cb(null, [{ address: c.address, family: c.family }])
    else cb(null, c.address, c.family)
  }) as unknown as LookupFunction
}
