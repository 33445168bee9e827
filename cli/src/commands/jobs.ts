/** Jobs: list, show, watch (one job or the event stream), retry, cancel. */
import type { JobRecord } from '@porthole/contracts'
import { EXIT } from '../exit.js'
import { printObject, printRows } from '../output.js'
import { arg, finishedJob, id, JOB_COLUMNS, noMore, optional, query, str, watch, type Command, type Row } from '../run.js'
import { events, isFinished } from '../wait.js'


export const JOB_COMMANDS: Record<string, Command> = {
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
  }
}
