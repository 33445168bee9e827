/** What operators and admins keep: console sessions, API keys, tenants, audit, webhooks, pools. */
import type { ApiKey, AuditEntry, ConsoleSessionView, Tenant } from '@porthole/contracts'
import { EXIT, usage, type ExitCode } from '../exit.js'
import { ago, printObject, printRows } from '../output.js'
import { arg, id, noMore, optional, query, str, type Command, type Row, type Run } from '../run.js'


export const ADMIN_COMMANDS: Record<string, Command> = {
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
      printRows(r.out, body, [['NAME', p => p.name], ['TENANT', p => p.tenantId], ['TEMPLATE', p => p.template], ['SIZE', p => p.size], ['READY', p => p.ready]])
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
