import Fastify from 'fastify'
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { lazySchemaCompilers } from '../../src/schema-compilers.js'
import { startProxy } from '../support/proxy.js'

// The compilers are Fastify's dependencies: looked up as Fastify requires them.
const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'))
const isLoaded = (id: string): boolean => fromFastify.cache[fromFastify.resolve(id)] !== undefined

describe('lazySchemaCompilers', () => {
  it('the proxy and admin apps start without loading Ajv or fast-json-stringify (no route of theirs has a schema)', async () => {
    const proxy = await startProxy({})
    try {
      const health = await fetch(`${proxy.url}/health`)
      expect(health.status).toBe(200)
      expect(isLoaded('@fastify/ajv-compiler')).toBe(false)
      expect(isLoaded('@fastify/fast-json-stringify-compiler')).toBe(false)
    } finally {
      await proxy.close()
    }
  })

  it('a route with a schema still gets Fastify\'s own validation and serialization, loaded on first use', async () => {
    const app = Fastify({ schemaController: lazySchemaCompilers() })
    app.post(
      '/echo',
      {
        schema: {
          body: { type: 'object', required: ['n'], properties: { n: { type: 'number' } } },
          response: { 200: { type: 'object', properties: { n: { type: 'number' } } } },
        },
      },
      async (request) => ({ n: (request.body as { n: number }).n, extra: 'dropped by the serializer' }),
    )
    const ok = await app.inject({ method: 'POST', url: '/echo', payload: { n: 2 } })
    expect(ok.statusCode).toBe(200)
    expect(ok.json()).toEqual({ n: 2 })
    const invalid = await app.inject({ method: 'POST', url: '/echo', payload: { m: 2 } })
    expect(invalid.statusCode).toBe(400)
    expect(invalid.json()).toMatchObject({ code: 'FST_ERR_VALIDATION' })
    expect(isLoaded('@fastify/ajv-compiler')).toBe(true)
    await app.close()
  })
})
