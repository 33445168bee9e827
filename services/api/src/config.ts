/** The API's settings, each an environment variable; the README's table is generated from `apiSettings`. */
import { bool, commonSettings, int, loadConfig, secretKeySettings, str, type ConfigOf, type Setting } from '@porthole/shared/config'

const optionalSecret = (doc: string): Setting<string | undefined> => ({ parse: v => v, default: undefined, doc, secret: true })

export const apiSettings = {
  ...commonSettings,
  ...secretKeySettings,
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
  TRUST_PROXY: bool('trust X-Forwarded-For from a reverse proxy in front of the API (client IPs in the audit log)', false),
  SSE_HEARTBEAT_SECONDS: int('interval of heartbeat comments on `GET /v1/events`', 15, 1, 300),
  AUDIT_RETENTION_DAYS: int('days audit entries are kept (each tenant has its own stream, trimmed by age)', 90, 1, 3650)
}

export type ApiConfig = ConfigOf<typeof apiSettings>

/** Parses the environment; throws a ConfigError naming the first bad variable. */
export function loadApiConfig (env: NodeJS.ProcessEnv = process.env): ApiConfig {
  return loadConfig(apiSettings, env)
}
