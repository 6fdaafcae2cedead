import type { FastifyServerOptions } from 'fastify'
import { createRequire } from 'node:module'

// Resolved as Fastify resolves them: they are its dependencies, not ours.
const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'))

type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>
type Builder = (...args: unknown[]) => unknown

/** Fastify's own selector from `id` (its default factory), required and made on the first call. */
function onFirstUse(id: string): Builder {
  let build: Builder | null = null
  return (...args) => (build ??= (requireFromFastify(id) as () => Builder)())(...args)
}

/**
 * Fastify's default schema compilers (Ajv, fast-json-stringify), loaded only when a route first declares a
 * schema. Fastify requires both when an instance is made; no route of the proxy or the admin API has a
 * schema, so by default ~100 modules (~1.5 MiB of heap) were loaded for nothing. The compilers count as
 * custom to Fastify, which changes one thing only: a headers schema's keys would not be lower-cased.
 */
export function lazySchemaCompilers(): { compilersFactory: CompilersFactory } {
  return {
    compilersFactory: {
      buildValidator: onFirstUse('@fastify/ajv-compiler') as CompilersFactory['buildValidator'],
      buildSerializer: onFirstUse('@fastify/fast-json-stringify-compiler') as CompilersFactory['buildSerializer'],
    },
  }
}
