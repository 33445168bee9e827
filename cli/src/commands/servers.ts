/** Servers and what is done to them: list, show, power, status, console. */
import { spawn } from 'node:child_process'
import type { JobRecord } from '@porthole/contracts'
import { CliError, EXIT, usage } from '../exit.js'
import { ago, printObject, printRows } from '../output.js'
import { arg, finishedJob, id, noMore, POWER_ACTIONS, query, str, watch, type Command, type Row, type Run } from '../run.js'


export const SERVER_COMMANDS: Record<string, Command> = {
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
  }
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
