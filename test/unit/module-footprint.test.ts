import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { startProxy } from '../support/proxy.js'
import { startProxyProcess } from '../support/proxy-process.js'
import { TS_CHILD_PRELUDE } from '../support/ts-child.js'

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

describe('`loopers serve` as its launchers run it', () => {
  // `serve` alone skips the command-line parser: commander (~130 KiB of source) and the other commands' modules
  // would be held for the proxy's life. The built CLI in a process of its own, embedded store.
  it('starts without loading commander', async () => {
    const modulesAtExit = fileURLToPath(new URL('../support/modules-at-exit.mjs', import.meta.url))
    const proxy = await startProxyProcess({ NODE_OPTIONS: `--import=${modulesAtExit}` })
    expect((await fetch(`${proxy.url}/health`)).status).toBe(200)
    expect(await proxy.stop()).toBe(0)
    const line = /^modules-at-exit (.*)$/m.exec(proxy.output())?.[1]
    expect(line, proxy.output()).toBeDefined()
    const { packages } = JSON.parse(line ?? '{}') as { packages: string[] }
    expect(packages).toContain('fastify')
    expect(packages).not.toContain('commander')
  }, 30_000)
})

describe('Node built-ins the serve path loads', () => {
  // An ES import of node:http reads every export; its WebSocket, CloseEvent and MessageEvent getters load Node's
  // own copy of undici (~2 MiB more resident at idle, for the process's life). Checked
  // in a fresh process: this test runner's own imports may already have loaded it.
  it("imports the server's module graph without loading Node's bundled undici", () => {
    const script = `${TS_CHILD_PRELUDE}
import(${JSON.stringify(new URL('../../src/server.ts', import.meta.url).href)}).then(() => {
  process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('undici'))))
})`
    const out = execFileSync(process.execPath, ['--experimental-transform-types', '--no-warnings', '-e', script], { encoding: 'utf8', timeout: 60_000 })
    expect(JSON.parse(out)).toEqual([])
  }, 60_000)
})

describe('built-ins deferred at start-up (src/lazy-builtins.ts)', () => {
  const runChild = (body: string): unknown => {
    const script = `${TS_CHILD_PRELUDE}
const { withLazyBuiltins } = require(${JSON.stringify(new URL('../../src/lazy-builtins.ts', import.meta.url).pathname)})
const loaded = (name) => process.moduleLoadList.includes('NativeModule ' + name)
;(async () => { ${body} })().then((out) => { process.stdout.write(JSON.stringify(out)); process.exit(0) }, (error) => { console.error(error); process.exit(1) })`
    return JSON.parse(execFileSync(process.execPath, ['--experimental-transform-types', '--no-warnings', '-e', script], { encoding: 'utf8', timeout: 60_000 }))
  }

  // Loaded, node:http2, node:https and node:tls (with what they load) held ~2.5 MiB more resident at idle, and
  // node:zlib (Bedrock's event-stream checksum) ~0.3 MiB. Checked in a fresh process, as above.
  it('loads the server and the Redis store without node:http2, node:https, node:tls or node:zlib', () => {
    const out = runChild(`
await withLazyBuiltins(() => Promise.all([
  import(${JSON.stringify(new URL('../../src/server.ts', import.meta.url).href)}),
  import(${JSON.stringify(new URL('../../src/budget/redis/redis-client.ts', import.meta.url).href)}),
  import(${JSON.stringify(new URL('../../src/budget/redis/store.ts', import.meta.url).href)}),
]))
return ['http2', 'https', 'tls', 'zlib'].filter(loaded)`)
    expect(out).toEqual([])
  }, 60_000)

  // Each stand-in hands its first use to the real module: Fastify's own HTTP/2 server answers, ioredis reaches
  // tls.connect (its handshake fails on a server that answers in plain text), and undici's HTTP/2 half runs (and throws on a client it cannot use).
  it('hands each deferred use to the real module', () => {
    const out = runChild(`
const { default: fastify } = await withLazyBuiltins(() => import('fastify'))
const { default: Redis } = await withLazyBuiltins(() => import('ioredis'))
await withLazyBuiltins(() => import('undici/lib/dispatcher/agent.js'))
const before = ['http2', 'https', 'tls'].filter(loaded)
const app = fastify({ http2: true })
app.get('/', async () => 'h2')
const url = await app.listen({ host: '127.0.0.1', port: 0 })
const http2 = require('node:http2')
const session = http2.connect(url)
const status = await new Promise((resolve, reject) => {
  const stream = session.request({ ':path': '/' })
  stream.on('response', (headers) => resolve(headers[':status']))
  stream.on('error', reject)
  stream.end()
})
session.destroy()
const plain = require('node:net').createServer((socket) => socket.end('-ERR not TLS\\r\\n'))
await new Promise((resolve) => plain.listen(0, '127.0.0.1', resolve))
const redis = new Redis({ host: '127.0.0.1', port: plain.address().port, tls: {}, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
const redisError = await new Promise((resolve) => {
  redis.on('error', (error) => resolve(error.code))
  redis.connect().catch(() => undefined)
})
redis.disconnect()
const standIn = Object.keys(require.cache).find((id) => id.includes('lazy-builtins.stand-in'))
let h2Error = null
try { require.cache[standIn].exports({}, {}) } catch (error) { h2Error = error.constructor.name }
return { before, status, redisError, h2Error, after: ['http2', 'tls'].filter(loaded) }`)
    expect(out).toEqual({ before: [], status: 200, redisError: 'ERR_SSL_WRONG_VERSION_NUMBER', h2Error: 'TypeError', after: ['http2', 'tls'] })
  }, 60_000)
})

describe('the built modules', () => {
  // V8 keeps every module's source for the process's life, and a source with one character above Latin-1 (a
  // dash or an arrow in a comment) as two bytes a character: the serve path's modules held 0.34 MiB more heap
  // with their comments (`npm test` builds dist/ first).
  it('leave the comments out of dist/ but keep the launcher line', () => {
    const built = (path: string): string => readFileSync(new URL(`../../dist/${path}`, import.meta.url), 'utf8')
    expect(built('cli.js').startsWith('#!/usr/bin/env -S ')).toBe(true)
    for (const path of ['server.js', 'tokens/rank-builder.js', 'http/dual-server.js']) {
      expect(built(path)).not.toMatch(/^\s*(\/\/(?!# sourceMappingURL=)|\/\*)/m)
    }
  })
})
