/** The commands: each one request (or a job started and waited for), printed as a table or as JSON. */
import { spawn } from 'node:child_process'
import type { ApiKey, AuditEntry, ConsoleSessionView, JobRecord, Tenant } from '@porthole/contracts'
import { isMissingRoute, type Client } from './client.js'
import { CliError, EXIT, usage, type ExitCode } from './exit.js'
import { ago, printObject, printRows, type Column, type Out } from './output.js'
import { events, isFinished, waitForJob } from './wait.js'

type Row = Record<string, unknown>

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

const POWER_ACTIONS = ['on', 'off', 'shutdown', 'reboot', 'reset', 'suspend', 'resume']

function str (r: Run, name: string): string | undefined {
  const v = r.opts[name]
  return typeof v === 'string' ? v : undefined
}

function arg (args: string[], i: number, what: string): string {
  const v = args[i]
  if (v === undefined || v === '') throw usage(`missing ${what}`)
  return v
}

function noMore (args: string[], n: number): void {
  if (args.length > n) throw usage(`unexpected argument: ${args[n] ?? ''}`)
}

function query (pairs: Record<string, string | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(pairs)) if (v !== undefined) q.set(k, v)
  const s = q.toString()
  return s === '' ? '' : `?${s}`
}

const id = (s: string): string => encodeURIComponent(s)

/** What a job's kind carries, shown after its kind: a power action or a console protocol. */
const detailOf = (j: JobRecord): string => j.kind === 'power' ? ` ${j.action}` : j.kind === 'console' ? ` ${j.protocol}` : ''

const JOB_COLUMNS: Array<Column<JobRecord>> = [
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
async function watch (r: Run, jobId: string): Promise<JobRecord> {
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
function finishedJob (r: Run, rec: JobRecord, ok: () => void): ExitCode {
  if (rec.state === 'succeeded') { ok(); return EXIT.ok }
  if (r.out.json) r.out.line(JSON.stringify(rec, null, 2))
  else r.note(`porthole: job ${rec.id} ${rec.state}${rec.error === undefined ? '' : `: ${rec.error.code}: ${rec.error.message}`}`)
  return jobExit(rec)
}

/** A collection this Porthole may not have yet (webhooks, pools): a 404 for the route says so plainly. */
async function optional<T> (r: Run, what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (err) {
    if (isMissingRoute(err)) throw new CliError(EXIT.notFound, `this Porthole has no ${what} (its API answers 404 for them)`)
    throw err
  }
}

export const COMMANDS: Record<string, Command> = {
  servers: {
    args: '',
    summary: 'list servers (customers: their own)',
    options: ['tenant'],
    async run (r, args) {
      noMore(args, 0)
      const { body } = await r.client.call<Row[]>('GET', `/v1/servers${query({ tenantId: str(r, 'tenant') })}`)
      printRows(r.out, body, [['ID', s => s.id], ['NAME', s => s.name], ['AGENT', s => s.agent], ['TENANT', s => s.tenantId], ['UPDATED', s => ago(s.updatedAt)]])
      return EXIT.ok
    }
  },
  'servers show': {
    args: '<server>',
    summary: 'one server record (passwords as ******)',
    async run (r, args) {
      noMore(args, 1)
      const { body } = await r.client.call<Row>('GET', `/v1/servers/${id(arg(args, 0, 'server id'))}`)
      printObject(r.out, body)
      return EXIT.ok
    }
  },
  power: {
    args: '<server> <on|off|shutdown|reboot|reset|suspend|resume>',
    summary: 'run a power action and wait for it to end (progress on stderr)',
    options: ['no-wait', 'idempotency-key'],
    async run (r, args) {
      noMore(args, 2)
      const server = arg(args, 0, 'server id')
      const action = arg(args, 1, `power action (${POWER_ACTIONS.join(', ')})`)
      if (!POWER_ACTIONS.includes(action)) throw usage(`unknown power action "${action}": one of ${POWER_ACTIONS.join(', ')}`)
      const key = str(r, 'idempotency-key')
      const { body: job } = await r.client.call<JobRecord>('POST', `/v1/servers/${id(server)}/power?wait=0`, { action }, key === undefined ? {} : { 'idempotency-key': key })
      if (r.opts['no-wait'] === true) {
        if (r.out.json) r.out.line(JSON.stringify(job, null, 2))
        else r.out.line(job.id)
        return EXIT.ok
      }
      const rec = await watch(r, job.id)
      return finishedJob(r, rec, () => {
        if (r.out.json) r.out.line(JSON.stringify(rec, null, 2))
        else r.out.line(`${action}: ${rec.result !== undefined && 'power' in rec.result ? `power ${rec.result.power}` : 'done'}${rec.result !== undefined && 'changed' in rec.result && rec.result.changed === false ? ' (unchanged)' : ''}`)
      })
    }
  },
  status: {
    args: '<server>',
    summary: "the server's power state, asked of its hypervisor or BMC",
    async run (r, args) {
      noMore(args, 1)
      const { body: job } = await r.client.call<JobRecord>('GET', `/v1/servers/${id(arg(args, 0, 'server id'))}/status?wait=0`)
      const rec = await watch(r, job.id)
      return finishedJob(r, rec, () => {
        const res = (rec.result ?? {}) as Row
        if (r.out.json) r.out.line(JSON.stringify(res, null, 2))
        else r.out.line(String(res.power ?? 'unknown'))
      })
    }
  },
  console: {
    args: '<server>',
    summary: 'a console URL (printed once: it carries the only copy of its token); --open opens it',
    options: ['protocol', 'ttl', 'single-use', 'open'],
    async run (r, args) {
      noMore(args, 1)
      const body: Row = {}
      const protocol = str(r, 'protocol')
      if (protocol !== undefined) body.protocol = protocol
      const ttl = str(r, 'ttl')
      if (ttl !== undefined) {
        if (!/^\d+$/.test(ttl)) throw usage(`--ttl: expected seconds, got "${ttl}"`)
        body.ttlSeconds = Number(ttl)
      }
      if (r.opts['single-use'] === true) body.singleUse = true
      const { body: job } = await r.client.call<JobRecord>('POST', `/v1/servers/${id(arg(args, 0, 'server id'))}/console?wait=0`, body)
      const rec = await watch(r, job.id)
      if (rec.state !== 'succeeded') return finishedJob(r, rec, () => {})
      // The URL is handed over once, to the key that asked, on the first read after the job succeeded: the
      // read that saw it succeed.
      const res = (rec.result ?? {}) as Row
      if (typeof res.url !== 'string') throw new CliError(EXIT.error, `job ${job.id} succeeded but its URL was delivered already`)
      if (r.out.json) r.out.line(JSON.stringify({ sessionId: res.sessionId, url: res.url, protocol: res.protocol, expiresAt: res.expiresAt }, null, 2))
      else r.out.line(res.url)
      if (r.opts.open === true) await openUrl(r, res.url)
      return EXIT.ok
    }
  },
  jobs: {
    args: '',
    summary: 'recent jobs, newest first',
    options: ['server', 'state', 'kind', 'tenant', 'limit'],
    async run (r, args) {
      noMore(args, 0)
      const { body } = await r.client.call<JobRecord[]>('GET', `/v1/jobs${query({ serverId: str(r, 'server'), state: str(r, 'state'), kind: str(r, 'kind'), tenantId: str(r, 'tenant'), limit: str(r, 'limit') })}`)
      printRows(r.out, body, JOB_COLUMNS)
      return EXIT.ok
    }
  },
  'jobs show': {
    args: '<job>',
    summary: 'one job with its history',
    async run (r, args) {
      noMore(args, 1)
      const { body } = await r.client.call<JobRecord>('GET', `/v1/jobs/${id(arg(args, 0, 'job id'))}`)
      if (r.out.json) { r.out.line(JSON.stringify(body, null, 2)); return EXIT.ok }
      printObject(r.out, body as unknown as Row, [['id', j => j.id], ['kind', j => j.kind], ['action', j => j.action], ['protocol', j => j.protocol], ['state', j => j.state], ['server', j => j.serverId], ['tenant', j => j.tenantId],
        ['requested by', j => j.requestedBy], ['retry of', j => j.retryOf], ['created', j => j.createdAt], ['deadline', j => j.deadline],
        ['error', j => { const e = j.error as Row | undefined; return e === undefined ? '' : `${String(e.code)}: ${String(e.message)}${e.retryable === true ? ' (retryable)' : ''}` }],
        ['result', j => j.result]])
      for (const h of body.history) r.out.line(`  ${h.at}  ${h.state}`)
      return EXIT.ok
    }
  },
  'jobs watch': {
    args: '[job]',
    summary: 'wait for a job to end (exit code by outcome); without a job, print job events as they come',
    options: ['server'],
    async run (r, args) {
      noMore(args, 1)
      const jobId = args[0]
      if (jobId !== undefined) {
        const rec = await watch(r, jobId)
        return finishedJob(r, rec, () => { r.out.line(r.out.json ? JSON.stringify(rec, null, 2) : rec.state) })
      }
      const ac = new AbortController()
      const stop = (): void => ac.abort()
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      try {
        const opened = (): void => { if (r.opts.quiet !== true) r.note('porthole: following job events (Ctrl-C stops)') }
        for await (const e of events(r.client, `/v1/events${query({ serverId: str(r, 'server') })}`, ac.signal, opened)) {
          if (e.event === 'end') { r.note('porthole: the API ended the stream'); break }
          if (r.out.json) { r.out.line(e.data); continue }
          let d: Row = {}
          try { d = JSON.parse(e.data) as Row } catch { /* printed raw below */ }
          r.out.line(typeof d.jobId === 'string' ? `${String(d.at ?? '')}  ${d.jobId}  ${String(d.kind ?? '')}  ${String(d.state ?? '')}  server ${String(d.serverId ?? '')}` : `${e.event}: ${e.data}`)
        }
      } finally {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
      }
      return EXIT.ok
    }
  },
  'jobs retry': {
    args: '<job>',
    summary: 'start a failed or timed-out job again (a new job linked to it) and wait for it',
    options: ['no-wait'],
    async run (r, args) {
      noMore(args, 1)
      const { body: job } = await optional(r, 'job retries', async () => await r.client.call<JobRecord>('POST', `/v1/jobs/${id(arg(args, 0, 'job id'))}/retry`))
      if (r.opts['no-wait'] === true || isFinished(job.state)) { r.out.line(r.out.json ? JSON.stringify(job, null, 2) : job.id); return EXIT.ok }
      const rec = await watch(r, job.id)
      return finishedJob(r, rec, () => { r.out.line(r.out.json ? JSON.stringify(rec, null, 2) : `${rec.id} ${rec.state}`) })
    }
  },
  'jobs cancel': {
    args: '<job>',
    summary: 'cancel a job that is still queued',
    async run (r, args) {
      noMore(args, 1)
      const { body } = await optional(r, 'job cancellation', async () => await r.client.call<JobRecord>('POST', `/v1/jobs/${id(arg(args, 0, 'job id'))}/cancel`))
      r.out.line(r.out.json ? JSON.stringify(body, null, 2) : `${body.id} ${body.state}`)
      return EXIT.ok
    }
  },
  sessions: {
    args: '',
    summary: 'live console sessions',
    options: ['server'],
    async run (r, args) {
      noMore(args, 0)
      const { body } = await r.client.call<ConsoleSessionView[]>('GET', `/v1/console-sessions${query({ serverId: str(r, 'server') })}`)
      printRows(r.out, body, [['ID', s => s.id], ['SERVER', s => s.serverId], ['PROTOCOL', s => s.protocol], ['CONNECTED', s => s.connected ? 'yes' : 'no'], ['EXPIRES', s => ago(s.expiresAt)], ['REVOKED', s => s.revokedAt === undefined ? '' : ago(s.revokedAt)]])
      return EXIT.ok
    }
  },
  'sessions revoke': {
    args: '<session>',
    summary: 'revoke a console session: its URL stops working and a live viewer is disconnected',
    async run (r, args) { return await remove(r, args, 'session id', sid => `/v1/console-sessions/${sid}`, 'revoked') }
  },
  keys: {
    args: '',
    summary: 'API keys (admin); never the keys themselves',
    async run (r, args) {
      noMore(args, 0)
      const { body } = await r.client.call<ApiKey[]>('GET', '/v1/api-keys')
      printRows(r.out, body, [['ID', k => k.id], ['NAME', k => k.name], ['ROLE', k => k.role], ['TENANT', k => k.tenantId], ['CREATED', k => ago(k.createdAt)]])
      return EXIT.ok
    }
  },
  'keys create': {
    args: '--role <admin|operator|customer> --name <name> [--tenant <id>]',
    summary: 'create an API key (admin); the key is printed once',
    options: ['role', 'name', 'tenant'],
    async run (r, args) {
      noMore(args, 0)
      const role = str(r, 'role')
      const name = str(r, 'name')
      if (role === undefined || name === undefined) throw usage('keys create needs --role and --name')
      const tenantId = str(r, 'tenant')
      const { body } = await r.client.call<Row>('POST', '/v1/api-keys', { role, name, ...(tenantId === undefined ? {} : { tenantId }) })
      if (r.out.json) r.out.line(JSON.stringify(body, null, 2))
      else { r.out.line(String(body.key)); r.note(`porthole: key ${String(body.id)} created; it is shown only this once`) }
      return EXIT.ok
    }
  },
  'keys delete': {
    args: '<key id>',
    summary: 'revoke an API key (admin): its streams end and the consoles it opened close',
    async run (r, args) { return await remove(r, args, 'key id', kid => `/v1/api-keys/${kid}`, 'deleted') }
  },
  tenants: {
    args: '',
    summary: 'tenants (admin)',
    async run (r, args) {
      noMore(args, 0)
      const { body } = await r.client.call<Tenant[]>('GET', '/v1/tenants')
      printRows(r.out, body, [['ID', t => t.id], ['NAME', t => t.name], ['SUSPENDED', t => t.suspended === true ? 'yes' : ''], ['CREATED', t => ago(t.createdAt)]])
      return EXIT.ok
    }
  },
  'tenants create': {
    args: '<name>',
    summary: 'create a tenant (admin)',
    async run (r, args) {
      noMore(args, 1)
      const { body } = await r.client.call<Tenant>('POST', '/v1/tenants', { name: arg(args, 0, 'tenant name') })
      r.out.line(r.out.json ? JSON.stringify(body, null, 2) : body.id)
      return EXIT.ok
    }
  },
  'tenants suspend': {
    args: '<tenant>',
    summary: "refuse a tenant's keys and close its consoles (admin)",
    async run (r, args) { return await tenantAction(r, args, 'suspend') }
  },
  'tenants resume': {
    args: '<tenant>',
    summary: "accept a suspended tenant's keys again (admin)",
    async run (r, args) { return await tenantAction(r, args, 'resume') }
  },
  audit: {
    args: '',
    summary: 'the audit log, newest first',
    options: ['server', 'tenant', 'limit'],
    async run (r, args) {
      noMore(args, 0)
      const { body } = await r.client.call<AuditEntry[]>('GET', `/v1/audit${query({ serverId: str(r, 'server'), tenantId: str(r, 'tenant'), limit: str(r, 'limit') })}`)
      printRows(r.out, body, [['AT', e => e.at], ['ACTOR', e => `${e.actor} (${e.role})`], ['ACTION', e => e.action], ['RESULT', e => e.result], ['SERVER', e => e.serverId], ['JOB', e => e.jobId], ['IP', e => e.ip]])
      return EXIT.ok
    }
  },
  webhooks: {
    args: '',
    summary: "the tenant's webhooks",
    async run (r, args) {
      noMore(args, 0)
      const { body } = await optional(r, 'webhooks', async () => await r.client.call<Row[]>('GET', '/v1/webhooks'))
      printRows(r.out, body, [['ID', w => w.id], ['URL', w => w.url], ['EVENTS', w => Array.isArray(w.events) ? w.events.join(',') : 'all'], ['DISABLED', w => w.disabledAt === undefined ? '' : ago(w.disabledAt)], ['CREATED', w => ago(w.createdAt)]])
      return EXIT.ok
    }
  },
  'webhooks create': {
    args: '<url> [--events a,b]',
    summary: 'register a webhook; its signing secret is printed once',
    options: ['events'],
    async run (r, args) {
      noMore(args, 1)
      const ev = str(r, 'events')
      const { body } = await optional(r, 'webhooks', async () => await r.client.call<Row>('POST', '/v1/webhooks', { url: arg(args, 0, 'webhook URL'), ...(ev === undefined ? {} : { events: ev.split(',').map(s => s.trim()).filter(s => s !== '') }) }))
      if (r.out.json) r.out.line(JSON.stringify(body, null, 2))
      else { r.out.line(String(body.secret)); r.note(`porthole: webhook ${String(body.id)} created; its secret is shown only this once`) }
      return EXIT.ok
    }
  },
  'webhooks deliveries': {
    args: '<webhook>',
    summary: "a webhook's deliveries with their outcome",
    async run (r, args) {
      noMore(args, 1)
      const { body } = await optional(r, 'webhooks', async () => await r.client.call<Row[]>('GET', `/v1/webhooks/${id(arg(args, 0, 'webhook id'))}/deliveries`))
      printRows(r.out, body, [['ID', d => d.id], ['EVENT', d => d.event ?? d.type], ['STATUS', d => d.status ?? d.outcome], ['ATTEMPTS', d => d.attempts], ['AT', d => d.at ?? d.createdAt]])
      return EXIT.ok
    }
  },
  'webhooks delete': {
    args: '<webhook>',
    summary: 'remove a webhook',
    async run (r, args) { return await optional(r, 'webhooks', async () => await remove(r, args, 'webhook id', wid => `/v1/webhooks/${wid}`, 'deleted')) }
  },
  pools: {
    args: '',
    summary: 'kiosk pools with their slots',
    async run (r, args) {
      noMore(args, 0)
      const { body } = await optional(r, 'pools', async () => await r.client.call<Row[]>('GET', '/v1/pools'))
      printRows(r.out, body, [['NAME', p => p.name], ['TENANT', p => p.tenantId], ['TEMPLATE', p => p.template], ['SIZE', p => p.size], ['READY', p => p.ready ?? (p.slots as Row | undefined)?.ready]])
      return EXIT.ok
    }
  },
  'pools show': {
    args: '<pool>',
    summary: 'one pool',
    async run (r, args) {
      noMore(args, 1)
      const { body } = await optional(r, 'pools', async () => await r.client.call<Row>('GET', `/v1/pools/${id(arg(args, 0, 'pool name'))}`))
      printObject(r.out, body)
      return EXIT.ok
    }
  }
}

/** DELETE of one item named by the only argument; prints `<verb> <id>` (or `{id, <verb>: true}`). */
async function remove (r: Run, args: string[], what: string, path: (id: string) => string, verb: 'deleted' | 'revoked'): Promise<ExitCode> {
  noMore(args, 1)
  const item = arg(args, 0, what)
  await r.client.call('DELETE', path(id(item)))
  r.out.line(r.out.json ? JSON.stringify({ id: item, [verb]: true }) : `${verb} ${item}`)
  return EXIT.ok
}

async function tenantAction (r: Run, args: string[], action: 'suspend' | 'resume'): Promise<ExitCode> {
  noMore(args, 1)
  const { body } = await r.client.call<Tenant>('POST', `/v1/tenants/${id(arg(args, 0, 'tenant id'))}/${action}`)
  r.out.line(r.out.json ? JSON.stringify(body, null, 2) : `${body.id} ${body.suspended === true ? 'suspended' : 'active'}`)
  return EXIT.ok
}

/** Opens the URL in a browser: $BROWSER, else the platform's opener; the CLI does not wait for it. */
async function openUrl (r: Run, url: string): Promise<void> {
  const cmd = r.browser ?? (process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'start' : 'xdg-open')
  await new Promise<void>((resolve) => {
    const p = spawn(cmd, [url], { stdio: 'ignore', detached: true, shell: process.platform === 'win32' })
    p.once('error', (err) => { r.note(`porthole: could not open a browser (${cmd}: ${err.message}); open the URL above yourself`); resolve() })
    p.once('spawn', () => { p.unref(); resolve() })
  })
}
