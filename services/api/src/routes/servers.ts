/** Server inventory. Passwords are sealed at rest (aad = server id) and shown as "******" in every response. */
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import {
  AGENT_TYPES, CONNECTION_SCHEMAS, ConsoleEndpoint, MASK, libvirtUriProblem, ovirtEngineUrl, ServerCreate, ServerPatch, ServerView, compile, splitSecrets, toServerView,
  type AgentType, type SecretPath, type ServerSecrets, type StoredServer
} from '@porthole/shared/contracts'
import { ValidationError } from '@porthole/shared/errors'
import { assertVisible, principal, requireRole, tenantScope } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { IdParams, errors } from '../schemas.js'

const connectionCheckers = Object.fromEntries(AGENT_TYPES.map(a => [a, compile(CONNECTION_SCHEMAS[a], `${a} connection`)])) as Record<AgentType, ReturnType<typeof compile>>
const consoleChecker = compile(ConsoleEndpoint, 'console')

/** Validates a part of a server record, naming the field as the client wrote it (`connection.host`). */
function checkPart (checker: ReturnType<typeof compile>, prefix: string, value: unknown): void {
  try {
    checker.parse(value)
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err
    const inner = err.details?.field
    const field = typeof inner === 'string' && inner !== '' ? `${prefix}.${inner}` : prefix
    const why = err.message.replace(/^invalid [^:]*:\s*/, '').replace(/^[^:]*:\s*/, '')
    throw new ValidationError(`${field}: ${why}`, field)
  }
}

/** Revokes every live console session of a server (the gateway closes their sockets within a second). */
async function revokeSessions (ctx: Ctx, serverId: string): Promise<void> {
  for (const session of await ctx.sessions.listLive({ serverId })) {
    if (session.revokedAt === undefined) await ctx.sessions.revoke(session)
  }
}

/** Checks a connection against its agent's schema, then the rules a schema cannot say; returns it as stored. */
function checkConnection (agent: AgentType, connection: Record<string, unknown>): Record<string, unknown> {
  checkPart(connectionCheckers[agent], 'connection', connection)
  if (agent === 'kvm') {
    const problem = libvirtUriProblem(String((connection as { uri: unknown }).uri))
    if (problem !== undefined) throw new ValidationError(`connection.uri: ${problem}`, 'connection.uri')
  }
  if (agent === 'ovirt') {
    // Written as the SDKs write it (…/ovirt-engine/api) or as the engine's base: stored in one form.
    const engine = ovirtEngineUrl(String(connection.url))
    if ('problem' in engine) throw new ValidationError(`connection.url: ${engine.problem}`, 'connection.url')
    return { ...connection, url: engine.url }
  }
  return connection
}

/** Seals the passwords of `connection` and `console` into one box bound to the server's id. */
function seal (ctx: Ctx, id: string, connection: Record<string, unknown>, console: Record<string, unknown> | undefined): Pick<StoredServer, 'connection' | 'console' | 'secrets' | 'secretPaths'> {
  const c = splitSecrets(connection)
  const k = splitSecrets(console)
  const secrets: ServerSecrets = {}
  const secretPaths: SecretPath[] = []
  if (c.password !== undefined) { secrets.connection = { password: c.password }; secretPaths.push('connection.password') }
  if (k.password !== undefined) { secrets.console = { password: k.password }; secretPaths.push('console.password') }
  const out: Pick<StoredServer, 'connection' | 'console' | 'secrets' | 'secretPaths'> = { connection: c.pub ?? {}, secretPaths }
  if (k.pub !== undefined) out.console = k.pub
  if (secretPaths.length > 0) out.secrets = ctx.box.seal(secrets, id)
  return out
}

export function serverRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/servers', {
      schema: {
        tags: ['servers'],
        summary: 'add a server (admin, operator)',
        description: "`connection` depends on `agent`: kvm `{uri, domain}`; ipmi `{host, port?, username, password, cipherSuite?}` (and `console: {host, port, password?}` for the BMC's VNC); ovirt `{url, username, password, vmId, caCert?}`. Passwords are write-only: responses show `\"******\"`.",
        body: ServerCreate,
        response: { 201: ServerView, ...errors() }
      }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin', 'operator')
      const b = req.body
      const connection = checkConnection(b.agent, b.connection)
      if (await ctx.tenants.get(b.tenantId) === undefined) throw new ValidationError(`tenantId: no tenant ${b.tenantId}`, 'tenantId')
      const id = randomUUID()
      const now = new Date().toISOString()
      const s: StoredServer = { id, tenantId: b.tenantId, name: b.name, agent: b.agent, ...seal(ctx, id, connection, b.console), createdAt: now, updatedAt: now }
      await ctx.servers.put(s)
      await audit(ctx, req, p, { action: 'server.create', result: 'ok', serverId: id, tenantId: s.tenantId })
      return reply.code(201).header('location', `/v1/servers/${id}`).send(toServerView(s))
    })

    app.get('/servers', {
      schema: {
        tags: ['servers'],
        summary: 'list servers (customers: their own)',
        querystring: Type.Object({ tenantId: Type.Optional(Type.String({ format: 'uuid' })) }, { additionalProperties: false }),
        response: { 200: Type.Array(ServerView), ...errors() }
      }
    }, async (req) => {
      const p = principal(req)
      const scope = tenantScope(p)
      if (scope !== undefined && req.query.tenantId !== undefined && req.query.tenantId !== scope) return []
      const list = await ctx.servers.list(scope ?? req.query.tenantId)
      return list.map(toServerView)
    })

    app.get('/servers/:id', {
      schema: { tags: ['servers'], summary: 'one server', params: IdParams, response: { 200: ServerView, ...errors(404) } }
    }, async (req) => {
      const s = assertVisible(principal(req), 'server', await ctx.servers.get(req.params.id))
      return toServerView(s)
    })

    app.patch('/servers/:id', {
      schema: {
        tags: ['servers'],
        summary: 'change a server (admin, operator)',
        description: 'Members replace the stored ones, except `connection`, whose members merge into the stored connection. A password of `"******"` keeps the stored one.',
        params: IdParams,
        body: ServerPatch,
        response: { 200: ServerView, ...errors(404) }
      }
    }, async (req) => {
      const p = principal(req)
      const old = assertVisible(p, 'server', await ctx.servers.get(req.params.id))
      requireRole(req, 'admin', 'operator')
      const b = req.body
      const secrets: ServerSecrets = old.secrets === undefined ? {} : ctx.box.open<ServerSecrets>(old.secrets, old.id)
      const connection: Record<string, unknown> = { ...old.connection, ...(secrets.connection?.password === undefined ? {} : { password: secrets.connection.password }), ...(b.connection ?? {}) }
      if (connection.password === MASK) connection.password = secrets.connection?.password
      if (connection.password === undefined || connection.password === null) delete connection.password
      for (const [k, v] of Object.entries(connection)) if (v === null) delete connection[k] // null removes an optional member
      let console: Record<string, unknown> | undefined = old.console === undefined && secrets.console === undefined ? undefined : { ...(old.console ?? {}), ...(secrets.console?.password === undefined ? {} : { password: secrets.console.password }) }
      if (b.console !== undefined) {
        console = { ...b.console }
        if (console.password === MASK) {
          if (secrets.console?.password === undefined) delete console.password
          else console.password = secrets.console.password
        }
      }
      const stored = checkConnection(old.agent, connection)
      if (console !== undefined) checkPart(consoleChecker, 'console', console)
      const s: StoredServer = { id: old.id, tenantId: old.tenantId, name: b.name ?? old.name, agent: old.agent, ...seal(ctx, old.id, stored, console), createdAt: old.createdAt, updatedAt: new Date().toISOString() }
      await ctx.servers.put(s)
      // Live consoles were opened to the old target: they end with it.
      if (b.connection !== undefined || b.console !== undefined) await revokeSessions(ctx, s.id)
      await audit(ctx, req, p, { action: 'server.update', result: 'ok', serverId: s.id, tenantId: s.tenantId })
      return toServerView(s)
    })

    app.delete('/servers/:id', {
      schema: { tags: ['servers'], summary: 'remove a server (admin, operator)', params: IdParams, response: { 204: Type.Null(), ...errors(404) } }
    }, async (req, reply) => {
      const p = principal(req)
      const s = assertVisible(p, 'server', await ctx.servers.get(req.params.id))
      requireRole(req, 'admin', 'operator')
      await ctx.servers.delete(s)
      await revokeSessions(ctx, s.id)
      await audit(ctx, req, p, { action: 'server.delete', result: 'ok', serverId: s.id, tenantId: s.tenantId })
      return reply.code(204).send(null)
    })
  }
}

