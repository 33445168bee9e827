/**
 * Server inventory. Passwords are sealed at rest, each bound to the server, its purpose and its destination
 * (see `server-secrets.ts` in shared), and shown as "******" in every response.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@fastify/type-provider-typebox'
import {
  AGENT_TYPES, CONNECTION_SCHEMAS, ConsoleEndpoint, CustomerServerView, MASK, kvmTarget, ovirtEngineUrl, ServerCreate, ServerPatch, ServerView, StoredServer, compile, splitSecrets, toServerView,
  type AgentType, type SecretPath, type SecretPurpose, type ServerSecrets
} from '@porthole/contracts'
import { kvmPolicyOf } from '@porthole/shared/config'
import { changedDestinationField, openLegacySecrets, openServerSecret, sealServerSecrets } from '@porthole/shared/crypto'
import { PortholeError, ValidationError } from '@porthole/contracts/errors'
import { assertVisible, principal, requireRole, tenantScope } from '../auth.js'
import { audit, type Ctx } from '../context.js'
import { IdParams, errors } from '../schemas.js'

const connectionCheckers = Object.fromEntries(AGENT_TYPES.map(a => [a, compile(CONNECTION_SCHEMAS[a], `${a} connection`)])) as Record<AgentType, ReturnType<typeof compile>>
const consoleChecker = compile(ConsoleEndpoint, 'console')
/** The record as stored: its connection already passed its agent's schema, so this only types it (and would catch a slip). */
const storedChecker = compile(StoredServer, 'server record')

/** Admins and operators get the record (passwords masked), customers what the server is and can do. */
const SERVER_VIEWS = Type.Union([ServerView, CustomerServerView])
const SERVER_VIEWS_DOC = 'Admins and operators see the whole record, passwords as `"******"`. Customers see what the server is and what it can do (`power.actions`, `console.protocols`), nothing of where it is hosted: no host, user, URI, URL, CA, port or domain.'

/** Validates a part of a server record, naming the field as the client wrote it (`connection.host`). */
function checkPart (checker: { parse: (value: unknown) => unknown }, prefix: string, value: unknown): void {
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

/**
 * Checks a connection against its agent's schema, then the rules a schema cannot say: a kvm connection must
 * stand for a libvirt URI that cannot run or reach anything else (the agents check it again); an oVirt engine
 * URL is stored in one form. Returns the connection as it is to be stored.
 */
function checkConnection (ctx: Ctx, agent: AgentType, connection: Record<string, unknown>): Record<string, unknown> {
  if (agent === 'kvm') {
    checkPart({ parse: v => kvmTarget(v, kvmPolicyOf(ctx.config)) }, 'connection', connection)
    return connection
  }
  checkPart(connectionCheckers[agent], 'connection', connection)
  if (agent === 'ovirt') {
    // Written as the SDKs write it (…/ovirt-engine/api) or as the engine's base: stored in one form.
    const engine = ovirtEngineUrl(String(connection.url))
    if ('problem' in engine) throw new ValidationError(`connection.url: ${engine.problem}`, 'connection.url')
    return { ...connection, url: engine.url }
  }
  return connection
}

/** Seals the passwords of `connection` and `console`, each bound to the server, its purpose and its destination. */
type SealedParts = Pick<StoredServer, 'sealed' | 'secretPaths'> & { connection: Record<string, unknown>, console?: Record<string, unknown> }

function seal (ctx: Ctx, id: string, agent: AgentType, connection: Record<string, unknown>, console: Record<string, unknown> | undefined): SealedParts {
  const c = splitSecrets(connection)
  const k = splitSecrets(console)
  const secrets: ServerSecrets = {}
  const secretPaths: SecretPath[] = []
  if (c.password !== undefined) { secrets.connection = { password: c.password }; secretPaths.push('connection.password') }
  if (k.password !== undefined) { secrets.console = { password: k.password }; secretPaths.push('console.password') }
  const out: SealedParts = { connection: c.pub ?? {}, secretPaths }
  if (k.pub !== undefined) out.console = k.pub
  const sealed = sealServerSecrets(ctx.box, { id, agent, connection: out.connection, console: out.console }, secrets)
  if (sealed !== undefined) out.sealed = sealed
  return out
}

/**
 * The stored password of one purpose, for a PATCH that keeps it: opened against the record's current
 * destination (the earlier form against the id). One that does not open (the record was changed outside
 * the API) must be sent again.
 */
function storedPassword (ctx: Ctx, old: StoredServer, purpose: SecretPurpose): string | undefined {
  if (!old.secretPaths.includes(`${purpose}.password`)) return undefined
  try {
    // The earlier form (bound to the id only) is kept only during a deliberate upgrade (UPGRADE_LEGACY_SECRETS).
    const opened = old.sealed?.[purpose] !== undefined
      ? openServerSecret(ctx.box, old, purpose)
      : ctx.config.UPGRADE_LEGACY_SECRETS ? openLegacySecrets(ctx.box, old)?.[purpose] : undefined
    if (opened === undefined) throw new Error('not sealed in the current form')
    return opened?.password
  } catch {
    throw secretMustBeSent(`${purpose}.password: the stored password does not open for this record any more: send ${purpose}.password again`, `${purpose}.password`)
  }
}

/**
 * A PATCH that moves a secret's destination (host, port, username, url, CA, uri) must send that secret
 * again: otherwise the stored password would be sent to wherever the record now points.
 */
function assertSecretsFollow (agent: AgentType, purpose: SecretPurpose, before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined, kept: boolean): void {
  if (!kept) return
  const field = changedDestinationField(agent, purpose, before, after)
  if (field !== undefined) throw secretMustBeSent(`${purpose}.${field} changed: send ${purpose}.password again`, `${purpose}.${field}`)
}

/** 422: the request is well formed, but cannot be carried out without the password it leaves out. */
function secretMustBeSent (message: string, field: string): PortholeError {
  return new PortholeError('invalid', message, { status: 422, details: { field } })
}

export function serverRoutes (ctx: Ctx): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/servers', {
      schema: {
        tags: ['servers'],
        summary: 'add a server (admin, operator)',
        description: "`connection` depends on `agent`: kvm `{uri, domain}` or `{transport, host, port?, user?, keyFile?, domain}`; ipmi `{host, port?, username, password, cipherSuite?}` (and `console: {host, port, password?}` for the BMC's VNC); ovirt `{url, username, password, vmId, caCert?}`. Passwords are write-only: responses show `\"******\"`.",
        body: ServerCreate,
        response: { 201: ServerView, ...errors() }
      }
    }, async (req, reply) => {
      const p = requireRole(req, 'admin', 'operator')
      const b = req.body
      const connection = checkConnection(ctx, b.agent, b.connection)
      if (await ctx.tenants.get(b.tenantId) === undefined) throw new ValidationError(`tenantId: no tenant ${b.tenantId}`, 'tenantId')
      const id = randomUUID()
      const now = new Date().toISOString()
      const s = storedChecker.parse({ id, tenantId: b.tenantId, name: b.name, agent: b.agent, ...seal(ctx, id, b.agent, connection, b.console), createdAt: now, updatedAt: now })
      await ctx.servers.put(s)
      await audit(ctx, req, p, { action: 'server.create', result: 'ok', serverId: id, tenantId: s.tenantId })
      return reply.code(201).header('location', `/v1/servers/${id}`).send(toServerView(s))
    })

    app.get('/servers', {
      schema: {
        tags: ['servers'],
        summary: 'list servers (customers: their own)',
        description: SERVER_VIEWS_DOC,
        querystring: Type.Object({ tenantId: Type.Optional(Type.String({ format: 'uuid' })) }, { additionalProperties: false }),
        response: { 200: Type.Array(SERVER_VIEWS), ...errors() }
      }
    }, async (req) => {
      const p = principal(req)
      const scope = tenantScope(p)
      if (scope !== undefined && req.query.tenantId !== undefined && req.query.tenantId !== scope) return []
      const list = await ctx.servers.list(scope ?? req.query.tenantId)
      return list.map(toServerView)
    })

    app.get('/servers/:id', {
      schema: { tags: ['servers'], summary: 'one server', description: SERVER_VIEWS_DOC, params: IdParams, response: { 200: SERVER_VIEWS, ...errors(404) } }
    }, async (req) => {
      const s = assertVisible(principal(req), 'server', await ctx.servers.get(req.params.id))
      return toServerView(s)
    })

    app.patch('/servers/:id', {
      schema: {
        tags: ['servers'],
        summary: 'change a server (admin, operator)',
        description: 'Members replace the stored ones, except `connection`, whose members merge into the stored connection. A password left out of `connection`, or sent as `"******"`, keeps the stored one, but only while it goes where it went: a change of where a password is sent (ipmi `host`, `port`, `username`; ovirt `url`, `username`, `caCert`; kvm `uri`; `console.host`, `console.port`) without the password is a 422 naming the field. `console` is replaced whole: a `console` without `password` removes the stored VNC password, `"password": "******"` keeps it (for the same host and port only).',
        params: IdParams,
        body: ServerPatch,
        response: { 200: ServerView, ...errors(404, 422) }
      }
    }, async (req) => {
      const p = principal(req)
      const old = assertVisible(p, 'server', await ctx.servers.get(req.params.id))
      requireRole(req, 'admin', 'operator')
      const b = req.body
      // A password left out (connection) or sent as the mask keeps the stored one, if it may follow.
      const sentConnection = b.connection?.password
      const keepConnection = sentConnection === undefined || sentConnection === MASK
      const connection: Record<string, unknown> = { ...old.connection, ...(b.connection ?? {}) }
      delete connection.password
      if (keepConnection) {
        const kept = storedPassword(ctx, old, 'connection')
        if (kept !== undefined) connection.password = kept
      } else if (sentConnection !== null) connection.password = sentConnection
      for (const [k, v] of Object.entries(connection)) if (v === null) delete connection[k] // null removes an optional member
      let console: Record<string, unknown> | undefined = old.console === undefined && !old.secretPaths.includes('console.password') ? undefined : { ...(old.console ?? {}) }
      let keepConsole = b.console === undefined
      if (b.console !== undefined) {
        console = { ...b.console }
        keepConsole = console.password === MASK
        delete console.password
        if (!keepConsole && b.console.password !== undefined) console.password = b.console.password
      }
      if (keepConsole && console !== undefined) {
        const kept = storedPassword(ctx, old, 'console')
        if (kept !== undefined) console.password = kept
      }
      // The connection as it is to be stored (an engine URL in its one form) is what the password must follow.
      const stored = checkConnection(ctx, old.agent, connection)
      assertSecretsFollow(old.agent, 'connection', old.connection, stored, keepConnection && old.secretPaths.includes('connection.password'))
      assertSecretsFollow(old.agent, 'console', old.console, console, keepConsole && old.secretPaths.includes('console.password'))
      if (console !== undefined) checkPart(consoleChecker, 'console', console)
      const s = storedChecker.parse({ id: old.id, tenantId: old.tenantId, name: b.name ?? old.name, agent: old.agent, ...seal(ctx, old.id, old.agent, stored, console), createdAt: old.createdAt, updatedAt: new Date().toISOString() })
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

