/**
 * What the stations take from the pools (services/api/src/pools): a pool's tenant and pictures, and the
 * hand-out itself (`handOut`, the function behind `POST /v1/pools/{name}/sessions`), so that a station's
 * desktop is handed out exactly as a kiosk key's would be: as a `kiosk` principal of the pool's tenant.
 */
import type { FastifyRequest } from 'fastify'
import type { PoolSession } from '@porthole/contracts'
import type { Principal } from '../auth.js'
import type { Ctx } from '../context.js'
import { handOut } from '../pools/handout.js'
import type { StoredStation } from './store.js'

export interface StationPool { name: string, tenantId: string, attract: string[] }

export interface PoolsPort {
  /** The pool, unless it is gone or being deleted. */
  pool: (name: string) => Promise<StationPool | undefined>
  /** One clean desktop of the station's pool; a PortholeError (503 with Retry-After when the pool is empty) otherwise. */
  handOut: (req: FastifyRequest, station: StoredStation) => Promise<PoolSession>
}

/** Who a station's own requests are (the hand-out, the audit log): a kiosk of its pool's tenant. */
export function stationPrincipal (s: StoredStation): Principal {
  return { id: `station:${s.id}`, role: 'kiosk', tenantId: s.tenantId }
}

export function poolsPort (ctx: Ctx): PoolsPort {
  return {
    pool: async (name) => {
      const p = await ctx.pools.get(name)
      return p === undefined || p.state === 'deleting' ? undefined : { name: p.name, tenantId: p.tenantId, attract: p.attract }
    },
    handOut: async (req, station) => await handOut(ctx, req, stationPrincipal(station), station.pool)
  }
}
