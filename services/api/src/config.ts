/** The API's settings, each an environment variable; the README's table is generated from `apiSettings`. */
import { auditSettings, bool, commonSettings, publicGatewaySettings, consoleTransitKeySettings, int, kvmPolicyOf, kvmPolicySettings, loadConfig, secretKeySettings, str, url, type ConfigOf, type Setting } from '@porthole/shared/config'
import { DEFAULT_CONSOLE_MAX_TOTAL_SECONDS, MAX_CONSOLE_TOTAL_SECONDS } from '@porthole/contracts'

/** Webhooks (routes/webhooks.ts, webhooks/deliverer.ts). */
const webhookSettings = {
  WEBHOOK_DELIVERY: bool('this API replica makes webhook deliveries (the replicas share them through a consumer group and leases; turn it off to keep outbound calls on some replicas only)', true),
  WEBHOOK_ALLOW_PRIVATE: bool('let webhooks point at loopback, link-local (metadata), private and reserved addresses: for a test or a closed network only (checked at registration and at every delivery)', false),
  WEBHOOK_TIMEOUT_SECONDS: int('how long one delivery attempt may take, connection and answer together, before it counts as failed', 10, 1, 120),
  WEBHOOK_CONCURRENCY: int('webhook deliveries one API replica has under way at once', 16, 1, 1000),
  WEBHOOK_CONCURRENCY_PER_URL: int('deliveries under way at once to one webhook (a slow endpoint cannot take every slot)', 4, 1, 1000),
  WEBHOOK_RETRY_FIRST_MS: int('wait before the first retry of a failed delivery; each later wait doubles (with up to 10 % jitter)', 5000, 10, 3_600_000),
  WEBHOOK_RETRY_MAX_MS: int('longest wait between two attempts of a delivery', 3_600_000, 10, 86_400_000),
  WEBHOOK_RETRY_FOR_SECONDS: int('how long a delivery is retried after its event before it is given up as failed', 86400, 1, 7 * 86400),
  WEBHOOKS_PER_TENANT: int('webhooks one tenant may register (429 beyond)', 20, 1, 1000)
}

const optionalSecret = (doc: string): Setting<string | undefined> => ({ parse: v => v, default: undefined, doc, secret: true })

export const apiSettings = {
  ...commonSettings,
  ...secretKeySettings,
  ...consoleTransitKeySettings,
  API_HOST: str('address the API listens on', '0.0.0.0'),
  API_PORT: int('port the API listens on', 8080, 0, 65535),
  PORTHOLE_ADMIN_TOKEN: {
    ...optionalSecret('bootstrap admin key: accepted as an admin API key when set (use it to create real keys, then unset it); at least 24 characters'),
    parse: (v: string) => { if (v.length < 24) throw new Error('expected at least 24 characters'); return v }
  } satisfies Setting<string | undefined>,
  JOB_DEADLINE_POWER_SECONDS: int('deadline of a power job, from its creation', 120, 1, 3600),
  JOB_DEADLINE_STATUS_SECONDS: int('deadline of a status job', 30, 1, 3600),
  JOB_DEADLINE_CONSOLE_SECONDS: int('deadline of a console job', 30, 1, 3600),
  MAX_WAIT_SECONDS: int('the longest `?wait=` a request may ask for', 60, 0, 600),
  BODY_LIMIT_BYTES: int('largest request body accepted (413 beyond)', 65536, 1024, 16 * 1024 * 1024),
  UPGRADE_LEGACY_SECRETS: bool('upgrade server records sealed before destination binding (one box bound to the server id only) to boxes bound to the destination they name now: set it for one start of one API replica after the upgrade, then unset it (while set, a record edited in Redis with an old box would be bound to its new destination; docs/runbook.md)', false),
  TRUST_PROXY: bool('trust X-Forwarded-For from a reverse proxy in front of the API (client IPs in the audit log and for AUTH_FAILURE_LIMIT: without it, behind a proxy every client shares its address)', false),
  ...kvmPolicySettings,
  SSE_HEARTBEAT_SECONDS: int('interval of heartbeat comments on `GET /v1/events`', 15, 1, 300),
  REQUEST_TIMEOUT_SECONDS: int('how long a client may take to send a whole request, headers and body (408 beyond); `?wait=` long-polls and event streams are not bounded by it', 30, 1, 600),
  RATE_LIMIT_WINDOW_SECONDS: int('window of the per-key request limits below (seconds)', 60, 1, 3600),
  RATE_LIMIT_CUSTOMER: int('requests a customer key may make per window (429 beyond; counted in Redis across every API replica)', 300, 1, 1_000_000),
  RATE_LIMIT_OPERATOR: int('requests an operator key may make per window (dashboards and scripts poll more)', 1200, 1, 1_000_000),
  RATE_LIMIT_ADMIN: int('requests an admin key (and PORTHOLE_ADMIN_TOKEN) may make per window', 1200, 1, 1_000_000),
  RATE_LIMIT_OPS_SESSION: int('requests one dashboard (`/ops`) session may make to `/ops/api` per window, and logins (`POST /ops/login`) one client address may try per window (429 beyond; counted in Redis across every API replica)', 1200, 1, 1_000_000),
  RATE_LIMIT_REFUSAL_DELAY_MS: int('a key already refused in this window waits this long for each further 429 (never past the window\'s end): a client that ignores Retry-After and retries at once is slowed to one request per delay and connection instead of taking the API\'s CPU from other tenants (0: answer at once)', 1000, 0, 10_000),
  AUTH_FAILURE_LIMIT: int('failed authentications one client address may make per AUTH_FAILURE_WINDOW_SECONDS; beyond, its requests get 429 before any key is looked at', 20, 1, 1_000_000),
  AUTH_FAILURE_WINDOW_SECONDS: int('window of AUTH_FAILURE_LIMIT (seconds)', 60, 1, 3600),
  KEY_CACHE_SECONDS: int('how long an API replica keeps a verified API key in memory instead of reading it (and its tenant) from Redis at each request; a deleted key or a suspended tenant is dropped at once on every replica, through the access events; 0: read at every request', 10, 0, 300),
  CONSOLE_SESSIONS_PER_SERVER: int('live console sessions one server may have (unexpired, unrevoked, plus console jobs under way); the next request gets 429', 5, 1, 1000),
  CONSOLE_SESSIONS_PER_TENANT: int("live console sessions one tenant's servers may have together", 50, 1, 100_000),
  CONSOLE_MAX_TOTAL_SECONDS: int("the longest a tenant's console session may live, renewals included (`POST /v1/console-sessions/{id}/renew`, or the page's own renewal of a `renewable` session)", DEFAULT_CONSOLE_MAX_TOTAL_SECONDS, 60, MAX_CONSOLE_TOTAL_SECONDS),
  EVENT_STREAMS_PER_KEY: int('open `GET /v1/events` streams one API key may hold across every API replica', 5, 1, 1000),
  ...auditSettings,
  ...publicGatewaySettings,
  PUBLIC_API_URL: url('the API as kiosk browsers reach it: station links (`POST /v1/pools/{name}/stations`) are built on it (default: the scheme and host the request came in on)', undefined, ['http', 'https']) as Setting<string | undefined>,
  OPS_SESSION_TTL_SECONDS: int('lifetime of a dashboard (`/ops`) login session; it also ends when its API key is deleted', 28800, 60, 7 * 86400),
  RABBITMQ_MANAGEMENT_URL: optionalSecret("RabbitMQ's management API for the dashboard's queue rates, e.g. `http://user:password@rabbitmq:15672` (without it the dashboard reads depths and consumers with passive declares, and shows no broker rates)"),
  ...webhookSettings,
  POOL_CHECK_WAIT_SECONDS: int('how long `POST /v1/pools` and `PATCH /v1/pools/{name}` wait for the agents\' pool controller to check the template (503 beyond, and a new pool is not kept)', 30, 1, 600),
  TENANT_MAX_QUEUED: int('jobs of one tenant (per lane: power, or status and console) waiting for a receiver\'s dispatch slot (see TENANT_MAX_IN_FLIGHT) past which the API refuses new ones with 429 and Retry-After', 200, 1, 1_000_000)
}

export type ApiConfig = ConfigOf<typeof apiSettings>

/** Parses the environment; throws a ConfigError naming the first bad variable. */
export function loadApiConfig (env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const config = loadConfig(apiSettings, env)
  kvmPolicyOf(config) // an allowed URI that could never be used stops the process here
  return config
}
