/** A server-sent-events client for tests: every event read so far, parsed, and the raw text. */
import { request, type IncomingMessage } from 'node:http'

export interface SseEvent { id?: string, event: string, data: any } // eslint-disable-line @typescript-eslint/no-explicit-any

export interface SseStream {
  status: number
  headers: IncomingMessage['headers']
  /** Every complete event so far (comments left out). */
  events: SseEvent[]
  /** Every byte read so far, comments included. */
  text: () => string
  closed: () => boolean
  close: () => void
}

/** Opens `url` (an http:// address) with the bearer `key` (none: null), more `headers` (a cookie) and, when given, a `Last-Event-ID`. */
export async function openSse (url: string, key: string | null, o: { lastEventId?: string, headers?: Record<string, string> } = {}): Promise<SseStream> {
  const headers: Record<string, string> = { accept: 'text/event-stream', ...o.headers }
  if (key !== null) headers.authorization = `Bearer ${key}`
  if (o.lastEventId !== undefined) headers['last-event-id'] = o.lastEventId
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(url, { headers }, resolve)
    req.on('error', reject)
    req.end()
  })
  const events: SseEvent[] = []
  let all = ''
  let buf = ''
  let closed = false
  res.setEncoding('utf8')
  res.on('data', (c: string) => {
    all += c
    buf += c
    let i
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i)
      buf = buf.slice(i + 2)
      const e: Partial<SseEvent> & { lines: string[] } = { lines: [] }
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue
        const [field, ...rest] = line.split(': ')
        const value = rest.join(': ')
        if (field === 'id') e.id = value
        else if (field === 'event') e.event = value
        else if (field === 'data') e.lines.push(value)
      }
      if (e.event === undefined && e.lines.length === 0) continue
      let data: unknown = e.lines.join('\n')
      try { data = JSON.parse(data as string) } catch { /* not JSON */ }
      events.push({ ...(e.id === undefined ? {} : { id: e.id }), event: e.event ?? 'message', data })
    }
  })
  res.once('close', () => { closed = true })
  res.on('error', () => {})
  return { status: res.statusCode ?? 0, headers: res.headers, events, text: () => all, closed: () => closed, close: () => { res.destroy() } }
}
