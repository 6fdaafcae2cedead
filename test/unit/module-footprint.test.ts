import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { describe, expect, it } from 'vitest'
import { startProxy } from '../support/proxy.js'

const require = createRequire(import.meta.url)
const isLoaded = (id: string): boolean => require.cache[require.resolve(id)] !== undefined
const zodRoot = `${dirname(require.resolve('zod/package.json'))}/`

describe('modules a running proxy loads', () => {
  // Each entry point loads what the proxy never uses (undici's: fetch, WebSocket, caches, mocks; prom-client's:
  // default metrics and OpenTelemetry's API), held in the heap for the process's life: ~4 MiB together.
  it("takes undici's Agent and prom-client's metric classes without their packages' entry points", async () => {
    const proxy = await startProxy({})
    try {
      const metrics = await fetch(`${proxy.server.adminUrl}/metrics`)
      expect(metrics.status).toBe(200)
      expect(isLoaded('undici/lib/dispatcher/agent.js')).toBe(true)
      expect(isLoaded('prom-client/lib/registry.js')).toBe(true)
      expect(isLoaded('undici')).toBe(false)
      expect(isLoaded('prom-client')).toBe(false)
    } finally {
      await proxy.close()
    }
  })

  // zod validates the environment and the pricing files at start-up, then is let go: ~3 MiB of heap otherwise.
  it('holds no zod module once started (configuration and prices validated)', async () => {
    const proxy = await startProxy({})
    try {
      expect((await fetch(`${proxy.url}/health`)).status).toBe(200)
      expect(Object.keys(require.cache).filter((id) => id.startsWith(zodRoot))).toEqual([])
      expect('__zod_globalRegistry' in globalThis).toBe(false)
    } finally {
      await proxy.close()
    }
  })
})
