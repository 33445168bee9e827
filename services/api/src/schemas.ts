/** Schemas shared by several routes. */
import { Type, type TSchema } from '@fastify/type-provider-typebox'
import { Problem } from './problem.js'

export const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) })

/** Problem responses every authenticated route can give (429: the per-key request limit). */
export function errors (...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {}
  for (const s of [400, 401, 403, 429, 500, 503, ...statuses]) out[s] = Problem
  return out
}

