/** Builds the fastify app from its dependencies; `main.ts` connects them, tests inject requests. */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { AmqpClient } from '@porthole/shared/amqp'
import { SecretBox } from '@porthole/shared/crypto'
import { PortholeError } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import { ApiKeyStore, AuditLog, ConsoleSessionStore, ConsoleShareStore, EventReader, JobStore, ServerStore, TenantStore, WebhookStore, PoolStore, type Redis } from '@porthole/shared/store'
import { Authenticator, assertKioskRoute } from './auth.js'
import type { ApiConfig } from './config.js'
import type { Ctx } from './context.js'
import { KeyCache } from './key-cache.js'
import { AuthFailures, EventStreams } from './limits.js'
import { OverLimit, refuseKnownOver, registerRequestLimit } from './request-limit.js'
import { createMetrics } from './metrics.js'
import { clientError, problem, sendProblem, toProblem } from './problem.js'
import { apiKeyRoutes } from './routes/api-keys.js'
import { auditRoutes } from './routes/audit.js'
import { consoleSessionRoutes } from './routes/console-sessions.js'
import { eventRoutes } from './routes/events.js'
import { jobRoutes } from './routes/jobs.js'
import { jobActionRoutes } from './routes/job-actions.js'
import { operationRoutes } from './routes/operations.js'
import { opsRoutes } from './ops/routes.js'
import { serverJobRoutes } from './routes/server-jobs.js'
import { serverRoutes } from './routes/servers.js'
import { tenantRoutes } from './routes/tenants.js'
import { webhookRoutes } from './routes/webhooks.js'
import { poolsPort } from './stations/pools-port.js'
import { stationAdminRoutes, stationPageRoutes } from './stations/routes.js'
import { WebhookDeliverer } from './webhooks/deliverer.js'
import { poolRoutes } from './routes/pools.js'
import { validatorCompiler } from './validation.js'
import { fixedValidators, lazySerializers } from './compilers.js'
import { responseView } from './views.js'
import { JobWaiter } from './waiter.js'

export interface AppDeps {
  config: ApiConfig
  log: Logger
  /** Commands. */
  redis: Redis
  /** A second connection, used only for the job-events subscription. */
  subscriber: Redis
  /** A third, without a command timeout, used only for the event stream's blocking reads. */
  blocking: Redis
  amqp: AmqpClient
}

/** The app with its type provider, as routes and tests see it. */
export type ApiApp = FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>

export const API_VERSION = '1.0.0'

export async function buildApp (deps: AppDeps): Promise<ApiApp> {
  const { config, log, redis, amqp } = deps
  const ns = config.PORTHOLE_NAMESPACE
  const jobs = new JobStore(redis, ns)
  const sessions = new ConsoleSessionStore(redis, ns)
  const apiKeys = new ApiKeyStore(redis, ns)
  const keyCache = new KeyCache(config.KEY_CACHE_SECONDS * 1000)
  const overLimit = new OverLimit(config.RATE_LIMIT_REFUSAL_DELAY_MS)
  const tenants = new TenantStore(redis, ns)
  const ctx: Ctx = {
    config,
    ns,
    log,
    redis,
    amqp,
    box: SecretBox.fromSettings(config),
    transit: SecretBox.forConsoleTransit(config),
    tenants,
    apiKeys,
    servers: new ServerStore(redis, ns),
    jobs,
    audit: new AuditLog(redis, ns, config.AUDIT_RETENTION_DAYS),
    sessions,
    shares: new ConsoleShareStore(redis, ns),
    waiter: new JobWaiter(deps.subscriber, jobs, log.child({ component: 'waiter' })),
    metrics: createMetrics({ amqp, ns, sessions, redis: { 'api': redis, 'api-events': deps.subscriber, 'api-stream': deps.blocking } }),
    auth: new Authenticator(apiKeys, tenants, config.PORTHOLE_ADMIN_TOKEN, keyCache),
    authFailures: new AuthFailures(redis, ns, config.AUTH_FAILURE_LIMIT, config.AUTH_FAILURE_WINDOW_SECONDS * 1000),
    streams: new EventStreams(redis, ns, config, log.child({ component: 'events' })),
    events: new EventReader(redis, deps.blocking, ns, log.child({ component: 'event-stream' })),
    webhooks: new WebhookStore(redis, ns),
    pools: new PoolStore(redis, ns)
  }
  const deliverer = config.WEBHOOK_DELIVERY ? new WebhookDeliverer({ config, redis, store: ctx.webhooks, box: ctx.box, log: log.child({ component: 'webhooks' }), metrics: { attempt: (status, seconds) => { ctx.metrics.webhookAttempts.observe({ status }, seconds) } } }) : undefined
  ctx.waiter.also(ctx.streams.channel, m => { ctx.streams.onMessage(m); keyCache.onMessage(m) })
  // Cached keys only while revocations reach this process (key-cache.ts).
  ctx.waiter.onSubscription(up => keyCache.live(up))

  const serializers = lazySerializers()
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.BODY_LIMIT_BYTES,
    trustProxy: config.TRUST_PROXY,
    // A client gets this long to send its whole request (slow senders hold sockets); the time a handler takes
    // (a ?wait= long-poll, an event stream) is not bounded by it. Node checks it every connectionsCheckingInterval.
    requestTimeout: config.REQUEST_TIMEOUT_SECONDS * 1000,
    http: { requestTimeout: config.REQUEST_TIMEOUT_SECONDS * 1000, headersTimeout: config.REQUEST_TIMEOUT_SECONDS * 1000, connectionsCheckingInterval: Math.min(1000, config.REQUEST_TIMEOUT_SECONDS * 500) },
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // One line per request (below) instead of fastify's two: logging is a good part of a request's CPU.
    // (Through a LogController: fastify 5 deprecates the top-level option, FSTDEP023.)
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // The router's own refusals (a malformed %-escape, a path parameter past maxParamLength) and those of
    // node's HTTP parser (headers too large, a malformed request) are problems too, not fastify's plain JSON.
    frameworkErrors: (err, req, reply) => { void sendProblem(reply, toProblem(err, req)) },
    clientErrorHandler: clientError,
    // TypeBox validation (no ajv to load) and serializers compiled on first use: see compilers.ts.
    schemaController: { compilersFactory: { buildValidator: fixedValidators(validatorCompiler), buildSerializer: serializers.factory } }
  }).withTypeProvider<TypeBoxTypeProvider>()
  // JSON only: anything else is a 415 rather than a string that fails validation later.
  app.removeContentTypeParser('text/plain')

  app.setErrorHandler((err, req, reply) => {
    const p = toProblem(err, req)
    if (p.status === 429) ctx.metrics.limitRefusals.inc({ limit: String(p.limit ?? 'unknown') })
    return sendProblem(reply, p)
  })
  app.setNotFoundHandler((req, reply) => sendProblem(reply, problem(404, 'not_found', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`, { requestId: req.id })))

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched'
    ctx.metrics.httpDuration.observe({ method: req.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
    // The key's id (never the key) so that an operator can tell whose requests a 429 storm is.
    req.log.info({ req, res: reply, ms: Math.round(reply.elapsedTime * 10) / 10, ...(req.principal === undefined ? {} : { apiKeyId: req.principal.id }) }, 'request')
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Porthole API', version: API_VERSION, description: 'Browser consoles and power control for KVM, IPMI and oVirt servers. Errors are RFC 9457 problem+json.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API key' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'tenants' }, { name: 'api-keys' }, { name: 'servers' }, { name: 'jobs' }, { name: 'console' }, { name: 'audit' }, { name: 'webhooks' }, { name: 'pools' }, { name: 'operations' }
      ]
    }
  })
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true })

  await app.register(operationRoutes(ctx))
  await app.register(opsRoutes(ctx))
  const pools = poolsPort(ctx)
  await app.register(stationPageRoutes(ctx, pools))
  await app.register(async (v1) => {
    v1.addHook('onRequest', async (req, reply) => {
      // A key this replica knows without I/O and knows is over its request limit: refused before any Redis
      // round trip, after the refusal delay (request-limit.ts). Not counted again: it was refused already.
      const known = ctx.auth.known(req.headers.authorization)
      const over = known === undefined ? undefined : await refuseKnownOver(overLimit, config, known, reply)
      if (over !== undefined) { req.principal = known; throw over }
      // An address that keeps failing is refused before any key is looked at (guessing keys costs it).
      await ctx.authFailures.check(req.ip)
      // A key the cache knew is not looked up (and hashed) a second time.
      if (known !== undefined) req.principal = known
      else {
        try {
          req.principal = await ctx.auth.authenticate(req.headers.authorization)
        } catch (err) {
          if (err instanceof PortholeError && err.code === 'unauthorized') await ctx.authFailures.record(req.ip)
          throw err
        }
      }
      assertKioskRoute(req)
    })
    // Requests per API key, counted in Redis for every replica; its hook runs per route, after the one above.
    await registerRequestLimit(v1, { redis, ns, config, over: overLimit })
    // Every JSON answer of /v1: customers get job records and audit entries as views.ts shows them to them.
    v1.addHook('preSerialization', async (req, _reply, payload) => await responseView(ctx, req.principal, payload))
    await v1.register(tenantRoutes(ctx))
    await v1.register(apiKeyRoutes(ctx))
    await v1.register(serverRoutes(ctx))
    await v1.register(serverJobRoutes(ctx))
    await v1.register(jobRoutes(ctx))
    await v1.register(jobActionRoutes(ctx))
    await v1.register(eventRoutes(ctx))
    await v1.register(consoleSessionRoutes(ctx))
    await v1.register(auditRoutes(ctx))
    await v1.register(webhookRoutes(ctx))
    await v1.register(poolRoutes(ctx))
    await v1.register(stationAdminRoutes(ctx, pools))
  }, { prefix: '/v1' })

  app.addHook('onReady', async () => {
    // Serve even while Redis is down (readyz says so); the subscription completes in the background.
    let t: NodeJS.Timeout | undefined
    await Promise.race([Promise.all([ctx.waiter.start(), ctx.events.start()]), new Promise<void>(resolve => { t = setTimeout(resolve, 3000) })])
    clearTimeout(t)
    await deliverer?.start()
  })
  // Once the API serves, the serializers not used yet compile in the background, between requests.
  app.addHook('onListen', async () => { void serializers.warm() })
  app.addHook('preClose', async () => { await ctx.waiter.close(); await ctx.events.stop(); await deliverer?.stop() })
  return app
}

