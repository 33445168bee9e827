// The one list of services (services/services.json), for the scripts: names, entry points, settings modules,
// each one's secrets and start-up environment. The test kit's stack reads the same file.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './local-env.mjs'

/** @type {Array<{name: string, dir: string, main: string, settings: string, secrets: string[], env: Record<string, string>, listen?: {host: string, port: string}}>} */
export const SERVICES = JSON.parse(readFileSync(join(ROOT, 'services', 'services.json'), 'utf8')).services
export const SERVICE_NAMES = SERVICES.map(s => s.name)
/** Every secret variable any service gets: each service is given its own and none of the others. */
export const ALL_SECRET_VARS = [...new Set(SERVICES.flatMap(s => s.secrets))]

export function service (name) {
  const s = SERVICES.find(x => x.name === name)
  if (s === undefined) throw new Error(`no service ${name} in services/services.json`)
  return s
}
export const mainOf = (name) => join(ROOT, service(name).dir, service(name).main)
export const settingsOf = (name) => join(ROOT, service(name).dir, service(name).settings)
