/**
 * At `info` stdout is written in blocks (src/logger.ts): a request's summary line still buffered when the proxy is
 * stopped with SIGTERM is written before the process exits, not lost with it.
 */
import { expect, it } from 'vitest'
import { useSpawnedOpenAiStack } from '../support/spawned-stack.js'

const stack = useSpawnedOpenAiStack(() => ({ LOG_LEVEL: 'info' }))

it('a summary line buffered at SIGTERM reaches stdout before the proxy exits', async () => {
  const { key, record } = await stack.admin.createKey('shutdown-log', ['openai'], { unlimited: true })
  const response = await fetch(`${stack.proxy.url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-test', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
  })
  expect(response.status).toBe(200)
  await response.arrayBuffer()
  // Stopped at once: well inside the second a quiet proxy may keep a line buffered.
  expect(await stack.proxy.stop()).toBe(0)
  const lines = stack.proxy
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
  expect(lines.filter((line) => line.msg === 'request' && line.key === record.hash.slice(0, 8))).toMatchObject([{ outcome: 'completed', status: 200, provider: 'openai' }])
})
