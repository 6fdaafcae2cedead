import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IncomingMessage } from 'node:http'
import { startProxy, type TestProxy } from '../support/proxy.js'

// The app's Fastify options that the request path's cost depends on.
describe('buildApp', () => {
  let proxy: TestProxy
  beforeAll(async () => {
    proxy = await startProxy({})
  })
  afterAll(async () => {
    await proxy.close()
  })

  it('gives each request the process logger itself, not a pino child built per request', () => {
    const app = proxy.server.app
    const child = app.childLoggerFactory.call(app, app.log, { reqId: 'req-1' }, {}, {} as IncomingMessage)
    expect(child).toBe(app.log)
  })

  it('still writes the one summary line per request at info', async () => {
    const response = await fetch(`${proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{}' })
    expect(response.status).toBe(401)
    await response.arrayBuffer()
    const lines = proxy.logs.filter((l) => l.msg === 'request')
    expect(lines.length).toBe(1)
    expect(lines[0]).toMatchObject({ outcome: 'refused', code: 'invalid_key', status: 401 })
    expect(lines[0]).not.toHaveProperty('reqId')
  })
})
