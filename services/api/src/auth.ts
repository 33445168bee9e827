/** Bearer API keys: looked up by their SHA-256; the bootstrap admin token is compared in constant time. */
import type { FastifyRequest } from 'fastify'
import type { Role } from '@porthole/contracts'
import { safeEqual, sha256Hex } from '@porthole/shared/crypto'
import { NotFoundError, PortholeError } from '@porthole/contracts/errors'
import type { ApiKeyStore, TenantStore } from '@porthole/shared/store'
import type { KeyCache } from './key-cache.js'
import type { AccessEvent } from './limits.js'

export interface Principal {
  /** The API key's id, or `bootstrap` for PORTHOLE_ADMIN_TOKEN. */
  id: string
  role: Role
  tenantId?: string
}

declare module 'fastify' {
  interface FastifyRequest { principal?: Principal }
}

export class Authenticator {
  private readonly adminHash: string | undefined

  constructor (private readonly keys: ApiKeyStore, private readonly tenants: TenantStore, adminToken: string | undefined, private readonly cache?: KeyCache) {
    // Compare hashes so that the comparison is constant-time whatever the presented key's length.
    this.adminHash = adminToken === undefined ? undefined : sha256Hex(adminToken)
  }

  /** The caller when that needs no I/O (the admin token, a key in the cache: key-cache.ts), else undefined. */
  known (header: string | undefined): Principal | undefined {
    const key = bearer(header)
    if (key === undefined) return undefined
    const hash = sha256Hex(key)
    if (this.adminHash !== undefined && safeEqual(hash, this.adminHash)) return { id: 'bootstrap', role: 'admin' }
    return this.cache?.get(hash)
  }

  async authenticate (header: string | undefined): Promise<Principal> {
    const key = bearer(header)
    if (key === undefined) throw new PortholeError('unauthorized', 'an API key is required: Authorization: Bearer <key>')
    const hash = sha256Hex(key)
    if (this.adminHash !== undefined && safeEqual(hash, this.adminHash)) return { id: 'bootstrap', role: 'admin' }
    const hit = this.cache?.get(hash)
    if (hit !== undefined) return hit
    const generation = this.cache?.generation() ?? 0
    const rec = await this.keys.find(key)
    if (rec === undefined) throw new PortholeError('unauthorized', 'unknown API key')
    const p: Principal = { id: rec.id, role: rec.role }
    if (rec.tenantId !== undefined) p.tenantId = rec.tenantId
    if ((p.role === 'customer' || p.role === 'kiosk') && p.tenantId === undefined) throw new PortholeError('unauthorized', `${p.role} key without a tenant`)
    if (p.tenantId !== undefined && (await this.tenants.get(p.tenantId))?.suspended === true) {
      throw new PortholeError('forbidden', `tenant ${p.tenantId} is suspended: its keys are refused until it is resumed`, { details: { tenantSuspended: true } })
    }
    this.cache?.put(hash, p, generation)
    return p
  }

  /** A key deleted or a tenant suspended: its cached keys go at once (key-cache.ts). */
  forget (e: AccessEvent): void { this.cache?.forget(e) }
}

function bearer (header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1]
}

/** The authenticated caller; the `/v1` hook guarantees one. */
export function principal (req: FastifyRequest): Principal {
  if (req.principal === undefined) throw new PortholeError('unauthorized', 'an API key is required')
  return req.principal
}

/** Throws 403 unless the caller has one of `roles`. */
export function requireRole (req: FastifyRequest, ...roles: Role[]): Principal {
  const p = principal(req)
  if (!roles.includes(p.role)) throw new PortholeError('forbidden', `this needs one of the roles: ${roles.join(', ')}`)
  return p
}

/** The tenant the caller is confined to (customers, kiosks), or undefined (admin, operator). */
export function tenantScope (p: Principal): string | undefined {
  return p.role === 'customer' || p.role === 'kiosk' ? p.tenantId : undefined
}

/** Route config of the routes a `kiosk` key may call (the hand-out); a kiosk key gets 403 from every other. */
export const KIOSK_ROUTE = { kiosk: true } as const

/** Throws 403 when a kiosk key calls a route not marked KIOSK_ROUTE. */
export function assertKioskRoute (req: FastifyRequest): void {
  if (req.principal?.role !== 'kiosk') return
  if ((req.routeOptions.config as { kiosk?: boolean } | undefined)?.kiosk === true) return
  throw new PortholeError('forbidden', 'a kiosk key may only hand out its pools\' desktops (POST /v1/pools/{name}/sessions)')
}

/** 404 (never 403) for a resource of another tenant. */
export function assertVisible<T extends { tenantId: string }> (p: Principal, what: string, item: T | undefined): T {
  if (item === undefined) throw new NotFoundError(what)
  const scope = tenantScope(p)
  if (scope !== undefined && item.tenantId !== scope) throw new NotFoundError(what)
  return item
}
