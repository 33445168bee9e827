/**
 * The API's schema compilers, built on first use rather than at start. Fastify compiles every route's
 * request validators and response serializers (fast-json-stringify) as the app gets ready, and loads ajv for
 * validation unless told otherwise: together most of the API's time from `node` to "ready". Validation is
 * TypeBox's (validation.ts) and needs no ajv; the serializers are fastify's own, compiled when a route first
 * answers with that status, or earlier by `warm()` once the API listens.
 */
import { createRequire } from 'node:module'
import type { FastifySchemaCompiler, FastifyServerOptions } from 'fastify'
import type { TSchema } from '@fastify/type-provider-typebox'

type Factories = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>
type SerializerFactory = NonNullable<Factories['buildSerializer']>
type SerializerCompiler = ReturnType<SerializerFactory>
type ValidatorFactory = NonNullable<Factories['buildValidator']>

/**
 * A validator factory that gives `compiler` for every route, as `setValidatorCompiler` would, but given to
 * fastify up front so that it does not load ajv (fastify's types expect an ajv compiler; any schema compiler works).
 */
export function fixedValidators (compiler: FastifySchemaCompiler<TSchema>): ValidatorFactory {
  return (() => compiler) as unknown as ValidatorFactory
}

const require = createRequire(import.meta.url)

export interface LazySerializers {
  /** For `schemaController.compilersFactory.buildSerializer`. */
  factory: SerializerFactory
  /**
   * Compiles the serializers not compiled yet, one per turn of the event loop, so that requests arriving
   * meanwhile are served in between. Resolves when none is left.
   */
  warm: () => Promise<void>
}

/** Fastify's default serializers (fast-json-stringify), loaded and compiled on first use, for one app. */
export function lazySerializers (): LazySerializers {
  const pending = new Set<() => void>()
  const factory: SerializerFactory = (externalSchemas, options) => {
    let compiler: SerializerCompiler | undefined
    const real = (): SerializerCompiler => {
      if (compiler === undefined) {
        const { SerializerSelector } = require('@fastify/fast-json-stringify-compiler') as { SerializerSelector: () => SerializerFactory }
        compiler = SerializerSelector()(externalSchemas, options)
      }
      return compiler
    }
    return (route) => {
      let serialize: ((doc: unknown) => string) | undefined
      const build = (): (doc: unknown) => string => {
        pending.delete(build)
        return (serialize ??= real()(route))
      }
      pending.add(build)
      return (doc: unknown) => (serialize ?? build())(doc)
    }
  }
  return {
    factory,
    async warm () {
      for (const build of [...pending]) {
        await new Promise(resolve => setImmediate(resolve))
        build()
      }
    }
  }
}
