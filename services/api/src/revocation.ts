/**
 * Revocation that bites: a deleted API key and a suspended tenant lose their open event streams at once and
 * their live consoles within a second, on whichever API replica and gateway holds them.
 */
import type { ConsoleSession } from '@porthole/contracts'
import { ConflictError } from '@porthole/contracts/errors'
import type { Ctx } from './context.js'

/** Revokes live sessions that `pick` chooses (the gateway closes their sockets); the number revoked. */
async function revokeWhere (ctx: Ctx, sessions: ConsoleSession[], pick: (s: ConsoleSession) => boolean): Promise<number> {
  let n = 0
  for (const s of sessions) if (s.revokedAt === undefined && pick(s) && await ctx.sessions.revoke(s)) n++
  return n
}

/** After an API key's deletion: its event streams end, and the consoles it opened close. */
export async function revokeApiKey (ctx: Ctx, apiKeyId: string): Promise<{ sessions: number }> {
  // After the key's record is gone (a lookup after this finds nothing), before the deletion answers.
  ctx.auth.forget({ type: 'api-key.revoked', apiKeyId })
  await ctx.streams.publish({ type: 'api-key.revoked', apiKeyId })
  const live = await ctx.sessions.listLive()
  // A session knows its console job; the job knows which key asked for it.
  const jobs = await ctx.jobs.getMany(live.map(s => s.jobId))
  const opened = new Set(jobs.filter(j => j.requestedBy === apiKeyId).map(j => j.id))
  return { sessions: await revokeWhere(ctx, live, s => opened.has(s.jobId)) }
}

/** After a tenant's suspension: its event streams end and every live console of its servers closes. */
export async function revokeTenant (ctx: Ctx, tenantId: string): Promise<{ sessions: number }> {
  ctx.auth.forget({ type: 'tenant.suspended', tenantId })
  await ctx.streams.publish({ type: 'tenant.suspended', tenantId })
  return { sessions: await revokeWhere(ctx, await ctx.sessions.listLive({ tenantId }), () => true) }
}

/**
 * True when the tenant is suspended, after revoking `sessionId` (a console its job opened while the
 * suspension swept the tenant's sessions): such a console is never handed out.
 */
export async function suspendedRevoking (ctx: Ctx, tenantId: string, sessionId?: string): Promise<boolean> {
  if ((await ctx.tenants.get(tenantId))?.suspended !== true) return false
  const s = sessionId === undefined ? undefined : await ctx.sessions.get(sessionId)
  if (s !== undefined) await ctx.sessions.revoke(s)
  return true
}

/** 409 while the tenant is suspended (revoking `sessionId` first, as above). */
export async function refuseIfSuspended (ctx: Ctx, tenantId: string, sessionId?: string): Promise<void> {
  if (await suspendedRevoking(ctx, tenantId, sessionId)) throw suspendedError(tenantId)
}

/** The 409 of a suspended tenant's request for a console. */
export function suspendedError (tenantId: string): ConflictError { return new ConflictError(`tenant ${tenantId} is suspended: no new consoles`) }
