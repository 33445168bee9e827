/**
 * Waiting for a job to end: the job's event stream (`GET /v1/events?jobId=`) says when it changes, and each
 * change is read back from `GET /v1/jobs/{id}` (the record is the truth; events only wake the CLI up). A
 * slow poll runs beside it, so a stream the API refuses (a limit) or drops still ends in an answer.
 */
import type { JobRecord, JobState } from '@porthole/contracts'
import type { Client } from './client.js'
import { CliError, EXIT } from './exit.js'

const TERMINAL: ReadonlySet<string> = new Set<JobState | 'cancelled'>(['succeeded', 'failed', 'timed_out', 'cancelled'])
const POLL_MS = 2000

export function isFinished (state: string): boolean { return TERMINAL.has(state) }

export interface WaitOptions {
  timeoutMs: number
  /** Called with the record each time its state changes (the first call with the state it had). */
  onState?: (rec: JobRecord) => void
}

export async function waitForJob (client: Client, jobId: string, o: WaitOptions): Promise<JobRecord> {
  const ac = new AbortController()
  let last = ''
  let settle: (r: JobRecord) => void = () => {}
  let fail: (e: unknown) => void = () => {}
  const done = new Promise<JobRecord>((resolve, reject) => { settle = resolve; fail = reject })
  let reading = false
  let again = false
  // One read at a time; a wake-up during a read asks for one more after it.
  const check = async (): Promise<void> => {
    if (reading) { again = true; return }
    reading = true
    try {
      do {
        again = false
        const rec = (await client.call<JobRecord>('GET', `/v1/jobs/${encodeURIComponent(jobId)}`)).body
        if (rec.state !== last) { last = rec.state; o.onState?.(rec) }
        if (isFinished(rec.state)) { settle(rec); return }
      } while (again)
    } catch (err) {
      fail(err)
    } finally { reading = false }
  }
  const timer = setTimeout(() => fail(new CliError(EXIT.timedOut, `job ${jobId} is still ${last === '' ? 'unknown' : last} after ${Math.round(o.timeoutMs / 1000)} s (--timeout); it goes on: porthole jobs watch ${jobId}`)), o.timeoutMs)
  const poll = setInterval(() => { void check() }, POLL_MS)
  void follow(client, jobId, ac.signal, () => { void check() }).catch(() => { /* the poll carries on */ })
  try {
    return await done
  } finally {
    clearTimeout(timer)
    clearInterval(poll)
    ac.abort()
  }
}

/** Reads the job's event stream, calling `wake` once connected and at each event, until aborted or closed. */
async function follow (client: Client, jobId: string, signal: AbortSignal, wake: () => void): Promise<void> {
  for await (const block of blocks(client, `/v1/events?jobId=${encodeURIComponent(jobId)}`, signal)) {
    // The first comment says the subscription is in place: a change from now on cannot be missed.
    if (block.startsWith(': connected') || /^data:/m.test(block)) wake()
  }
}

/** Server-sent events as `{event, data}`, for `jobs watch` without a job id; `onOpen` once subscribed. */
export async function * events (client: Client, path: string, signal: AbortSignal, onOpen: () => void = () => {}): AsyncGenerator<{ event: string, id?: string, data: string }> {
  for await (const block of blocks(client, path, signal)) {
    if (block.startsWith(': connected')) onOpen()
    let event = 'message'
    let id: string | undefined
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
      else if (line.startsWith('id:')) id = line.slice(3).trim()
    }
    if (data.length > 0) yield { event, data: data.join('\n'), ...(id === undefined ? {} : { id }) }
  }
}

/** The raw blocks of an event stream (separated by a blank line), until it ends or `signal` aborts. */
async function * blocks (client: Client, path: string, signal: AbortSignal): AsyncGenerator<string> {
  const res = await client.stream(path, signal)
  if (res.body === null) return
  const decoder = new TextDecoder()
  let buf = ''
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true }).replaceAll('\r\n', '\n')
      let i
      while ((i = buf.indexOf('\n\n')) !== -1) {
        yield buf.slice(0, i)
        buf = buf.slice(i + 2)
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err
  }
}
