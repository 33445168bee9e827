/** What every command gets (the client, the output, the options) and the small helpers they share. */
import type { JobRecord } from '@porthole/contracts'
import { isMissingRoute, type Client } from './client.js'
import { CliError, EXIT, usage, type ExitCode } from './exit.js'
import { ago, type Column, type Out } from './output.js'
import { waitForJob } from './wait.js'

export type Row = Record<string, unknown>

export interface Run {
  client: Client
  out: Out
  /** Progress and notes for people: stderr. */
  note: (s: string) => void
  /** On a terminal: rewrites one status line in place (an elapsed-time counter while a job runs). */
  ticker?: ((s: string) => void) | undefined
  opts: Record<string, string | boolean | undefined>
  timeoutMs: number
  browser: string | undefined
}

export interface Command {
  args: string
  summary: string
  options?: string[]
  run: (r: Run, args: string[]) => Promise<ExitCode | undefined>
}

export const POWER_ACTIONS = ['on', 'off', 'shutdown', 'reboot', 'reset', 'suspend', 'resume']

export function str (r: Run, name: string): string | undefined {
  const v = r.opts[name]
  return typeof v === 'string' ? v : undefined
}

export function arg (args: string[], i: number, what: string): string {
  const v = args[i]
  if (v === undefined || v === '') throw usage(`missing ${what}`)
  return v
}

export function noMore (args: string[], n: number): void {
  if (args.length > n) throw usage(`unexpected argument: ${args[n] ?? ''}`)
}

export function query (pairs: Record<string, string | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(pairs)) if (v !== undefined) q.set(k, v)
  const s = q.toString()
  return s === '' ? '' : `?${s}`
}

export const id = (s: string): string => encodeURIComponent(s)

/** What a job's kind carries, shown after its kind: a power action or a console protocol. */
const detailOf = (j: JobRecord): string => j.kind === 'power' ? ` ${j.action}` : j.kind === 'console' ? ` ${j.protocol}` : ''

export const JOB_COLUMNS: Array<Column<JobRecord>> = [
  ['ID', j => j.id], ['KIND', j => j.kind + detailOf(j)],
  ['STATE', j => j.state], ['SERVER', j => j.serverId], ['CREATED', j => ago(j.createdAt)], ['ERROR', j => j.error === undefined ? '' : `${j.error.code}: ${j.error.message}`]
]

/** The exit code a finished job stands for. */
function jobExit (rec: JobRecord): ExitCode {
  if (rec.state === 'succeeded') return EXIT.ok
  if (rec.state === 'timed_out') return EXIT.timedOut
  return EXIT.jobFailed
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

/**
 * Waits for a job, its states on stderr as they come, unless --quiet; on a terminal a line below them
 * counts the seconds while it waits.
 */
export async function watch (r: Run, jobId: string): Promise<JobRecord> {
  const start = Date.now()
  const quiet = r.opts.quiet === true
  const secs = (): string => ((Date.now() - start) / 1000).toFixed(1)
  let state = 'queued'
  let frame = 0
  const tick = r.ticker === undefined || quiet ? undefined : r.ticker
  const draw = (): void => { tick?.(`${SPINNER[frame++ % SPINNER.length] ?? ''} job ${jobId.slice(0, 8)} ${state} ${secs()} s`) }
  // Drawn at once, then ten times a second: even a job that ends at once has shown its line.
  draw()
  const timer = tick === undefined ? undefined : setInterval(draw, 100)
  try {
    return await waitForJob(r.client, jobId, {
      timeoutMs: r.timeoutMs,
      onState: rec => {
        state = rec.state
        if (quiet) return
        tick?.('')
        const why = rec.error === undefined ? '' : ` (${rec.error.code}: ${rec.error.message})`
        r.note(`job ${rec.id} ${rec.kind}${detailOf(rec)}: ${rec.state}${why} [${secs()} s]`)
      }
    })
  } finally {
    clearInterval(timer)
    tick?.('')
  }
}

/** Prints a finished job; the exit code says how it ended. */
export function finishedJob (r: Run, rec: JobRecord, ok: () => void): ExitCode {
  if (rec.state === 'succeeded') { ok(); return EXIT.ok }
  if (r.out.json) r.out.line(JSON.stringify(rec, null, 2))
  else r.note(`porthole: job ${rec.id} ${rec.state}${rec.error === undefined ? '' : `: ${rec.error.code}: ${rec.error.message}`}`)
  return jobExit(rec)
}

/** A collection this Porthole may not have yet (webhooks, pools): a 404 for the route says so plainly. */
export async function optional<T> (r: Run, what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (err) {
    if (isMissingRoute(err)) throw new CliError(EXIT.notFound, `this Porthole has no ${what} (its API answers 404 for them)`)
    throw err
  }
}
