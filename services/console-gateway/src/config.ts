/**
 * The console gateway's settings: one spec, parsed once at start-up (a bad value stops the process naming
 * the variable). CONSOLE_KEY is the gateway's own key: it seals console targets at rest in Redis and keys
 * the guacamole-lite tokens; no other service has it. CONSOLE_TRANSIT_KEY opens what agents send and seals
 * what the API takes; PORTHOLE_SECRET_KEY, which seals server credentials, is not the gateway's to have.
 */
import { auditSettings, bool, commonSettings, consoleTransitKeySettings, int, list, loadConfig, metricsHostSettings, publicGatewaySettings, required, secret, solBridgeSettings, str, type ConfigOf } from '@porthole/shared/config'

export const configSpec = {
  ...commonSettings,
  // Not secretKeySettings: the gateway must not be able to open server credentials.
  ...consoleTransitKeySettings,
  ...auditSettings,
  GATEWAY_HOST: str('address the console gateway listens on', '0.0.0.0'),
  GATEWAY_PORT: int('port the console gateway listens on', 8081, 1, 65535),
  ...publicGatewaySettings,
  ...metricsHostSettings,
  GATEWAY_METRICS_PORT: int('port of the gateway\'s metrics listener (`/metrics`, `/healthz`, `/readyz`), apart from the public one (0: any free port, named in the ready line)', 9103, 0, 65535),
  CONSOLE_KEY: required(secret('32 random bytes, base64, known only to the gateway: seals console targets at rest and keys guacamole-lite tokens (`openssl rand -base64 32`)')),
  CONSOLE_KEY_ID: str('id of CONSOLE_KEY, stored with every target it seals so the key can be rotated', 'c1'),
  CONSOLE_OLD_KEYS: secret('earlier console keys still accepted for opening, as `id:base64,id:base64`', ''),
  CONSOLE_FRAME_ANCESTORS: list('origins whose pages may show the console page in a frame, comma-separated: the API\'s origin when kiosk stations (`/station/...`) are used (default: none, the page refuses every frame)', []),
  ALLOWED_ORIGINS: list('origins allowed to open console WebSockets, comma-separated (default: the origin of PUBLIC_GATEWAY_URL)', []),
  GUACD_HOST: str('guacd host for guacamole sessions', '127.0.0.1'),
  GUACD_PORT: int('guacd port', 4822, 1, 65535),
  ...solBridgeSettings,
  CONSOLE_IDLE_SECONDS: int('close a console after this many seconds without keyboard or mouse input (0 = never)', 0, 0, 7200),
  CONSOLE_PING_SECONDS: int('seconds between WebSocket pings to each console viewer; a viewer that shows no sign of life (a pong, a message, bytes taken) through two pings is cut off and its session freed (0 = no pings)', 20, 0, 3600),
  CONSOLE_RESUME_GRACE_SECONDS: int('seconds a single-use console\'s own viewer (the browser tab that used it, by a secret only that tab holds) may come back after its socket dropped (0 = never)', 60, 0, 3600),
  TRUST_PROXY: bool('take the client address from X-Forwarded-For (only behind a proxy that sets it)', false)
}

export type GatewayConfig = ConfigOf<typeof configSpec>

export function readConfig (env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  return loadConfig(configSpec, env)
}

/** The origins allowed to open WebSockets: ALLOWED_ORIGINS, or the origin of PUBLIC_GATEWAY_URL. */
export function allowedOrigins (c: GatewayConfig): Set<string> {
  const list = c.ALLOWED_ORIGINS.length > 0 ? c.ALLOWED_ORIGINS : [new URL(c.PUBLIC_GATEWAY_URL).origin]
  return new Set(list.map(o => o.toLowerCase().replace(/\/+$/, '')))
}
