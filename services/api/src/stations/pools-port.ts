/**
 * What the stations take from the pools (services/api/src/pools): a pool's tenant and pictures, and the
 * hand-out itself (the same function behind `POST /v1/pools/{name}/sessions`), so that a station's
 * desktop is handed out exactly as any other.
 */
import type { FastifyRequest } from 'fastify'
import { PortholeError } from '@porthole/contracts/errors'
import type { Ctx } from '../context.js'
import type { StoredStation } from './store.js'

export interface StationPool { name: string, tenantId: string, attract: string[] }
export interface HandedOut { sessionId: string, url: string, expiresAt: string, serverId: string }

export interface PoolsPort {
  pool: (name: string) => Promise<StationPool | undefined>
  /** One clean desktop of the station's pool; a PortholeError (503 with Retry-After when the pool is empty) otherwise. */
  handOut: (req: FastifyRequest, station: StoredStation) => Promise<HandedOut>
}

/** The pools of this API (until the pool engine is merged, none: every station route says so). */
export function poolsPort (_ctx: Ctx): PoolsPort {
  const none = (): never => { throw new PortholeError('unavailable', 'kiosk pools are not part of this build yet', { status: 503 }) }
  return { pool: async () => none(), handOut: async () => none() }
}
