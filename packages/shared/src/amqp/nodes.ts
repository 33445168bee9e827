/** The broker's nodes as RABBITMQ_URL lists them, and the connection helpers the client shares with them. */
import type { ChannelModel } from 'amqplib'

/**
 * The node URLs of `RABBITMQ_URL`: one URL, or a comma-separated list of the cluster's nodes. Entries after
 * the first may be bare `host:port` (or `amqp://host:port`); they take the first entry's scheme, user,
 * password, virtual host and query (`heartbeat`), so the credentials are written once. Throws on an empty
 * list or an entry that is not a URL.
 */
export function brokerNodes (url: string): string[] {
  const entries = url.split(',').map(s => s.trim()).filter(s => s !== '')
  const first = entries[0]
  if (first === undefined) throw new Error('RABBITMQ_URL names no broker node')
  const base = new URL(first)
  return entries.map((e, i) => {
    if (i === 0) return base.toString()
    const u = new URL(/^[a-z]+:\/\//i.test(e) ? e : `${base.protocol}//${e}`)
    if (u.username === '' && base.username !== '') { u.username = base.username; u.password = base.password }
    if (u.pathname === '' || u.pathname === '/') u.pathname = base.pathname
    if (u.search === '') u.search = base.search
    return u.toString()
  })
}

/** `host:port` of a node URL: what logs and tests name a node by (never its credentials). */
export function nodeAddress (url: string): string {
  const u = new URL(url)
  return `${u.hostname}:${u.port === '' ? (u.protocol === 'amqps:' ? '5671' : '5672') : u.port}`
}

export function withHeartbeat (url: string): string {
  const u = new URL(url)
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', '10')
  return u.toString()
}

/**
 * Closes a connection, but never waits longer than `ms`: when the socket died a moment before, amqplib
 * waits for a close-ok that never comes. Past the limit the socket is destroyed.
 */
export async function closeWithin (conn: ChannelModel, ms: number): Promise<void> {
  if (!await within(conn.close(), ms)) (conn as unknown as { connection?: { stream?: { destroy: () => void } } }).connection?.stream?.destroy()
}

/** Waits for `p` at most `ms`; true when it settled in time (either way). */
export async function within (p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined
  const settled = await Promise.race([
    p.then(() => true, () => true),
    new Promise<boolean>(resolve => { t = setTimeout(() => resolve(false), ms) })
  ])
  clearTimeout(t)
  return settled
}
