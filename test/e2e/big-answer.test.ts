/**
 * No request may stall the others, however big the provider's answer: a 32 MiB non-streamed answer (a big
 * batch of embeddings) is relayed and its usage read and charged without the proxy's event loop spending
 * more than a few milliseconds of CPU without turning, while small requests flow. Reading it on the event
 * loop costs ~50 ms of walking (the whole parse of an answer the walk cannot vouch for, ~70 ms) and a
 * ~20 ms copy of its chunks into one buffer, each in one go (88 ms in one stretch, measured here). Measured in the proxy's own main-thread CPU
 * time (test/support/loop-cpu-probe.mjs), so a loaded machine does not inflate it. The charge is the usage
 * the answer reports, as for a small answer.
 */
import type http from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { json, startFakeServer } from '../support/fake-server.js'
import { LOOP_CPU_PROBE, longestStretch } from '../support/loop-cpu.js'
import { useSpawnedStack } from '../support/spawned-stack.js'

const MIB = 1024 * 1024
/**
 * The longest CPU stretch of the proxy's event loop a big answer may cause: read on the loop, 88 ms. The bound
 * of test/e2e/big-body.test.ts, for the same reasons: the probe's clock moves in whole ticks (4 ms here), and
 * the collections 64 MiB of buffers bring forward pause the loop a few ms (4-7.5 ms read here, on a loaded machine).
 */
const MAX_CPU_STRETCH_MS = 20
/** Input tokens every big answer reports: far below what the request held, so a charge of the hold shows. */
const BIG_USAGE_TOKENS = 3
const SMALL_USAGE = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 }

/** A list of 1,536-dimension embeddings of at least `bytes` bytes, then `tail` (members up to its close). */
function embeddingAnswer(bytes: number, tail: string): Buffer {
  const vector = JSON.stringify(Array.from({ length: 1536 }, (_, k) => Number((Math.sin(k) * 0.05).toFixed(9))))
  const items: string[] = []
  let size = 0
  while (size < bytes) {
    const item = `{"object":"embedding","index":${items.length},"embedding":${vector}}`
    items.push(item)
    size += item.length + 1
  }
  return Buffer.from(`{"object":"list","data":[${items.join(',')}],"model":"embed-test"${tail}}`)
}

const usage = `"usage":{"prompt_tokens":${BIG_USAGE_TOKENS},"total_tokens":${BIG_USAGE_TOKENS}}`
// Nested deeper than the walk goes: the answer is parsed whole (where the walk cannot vouch, JSON.parse decides).
const deep = `${'['.repeat(100)}${']'.repeat(100)}`
const ANSWERS: Record<string, Buffer> = {
  plain: embeddingAnswer(32 * MIB, `,${usage}`),
  deep: embeddingAnswer(32 * MIB, `,"nested":${deep},${usage}`),
}

let dir: string
let probeFile: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'loopers-big-answer-'))
  probeFile = join(dir, 'loop-cpu.jsonl')
})

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

const stack = useSpawnedStack(
  () =>
    startFakeServer((req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer) => {
      if (req.url === '/v1/embeddings') {
        const answer = ANSWERS[(JSON.parse(raw.toString()) as { user: string }).user]!
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length })
        res.end(answer)
        return
      }
      json(res, 200, { id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-test', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: SMALL_USAGE })
    }),
  () => ({ NODE_OPTIONS: `--import ${LOOP_CPU_PROBE}`, LOOPERS_TEST_LOOP_CPU_FILE: probeFile }),
)

async function post(key: string, path: string, body: unknown): Promise<{ status: number; bytes: number; ms: number }> {
  const started = performance.now()
  const response = await fetch(`${stack.proxy.url}/openai${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const bytes = (await response.arrayBuffer()).byteLength
  return { status: response.status, bytes, ms: performance.now() - started }
}

const SMALL = { model: 'gpt-test', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }
// A few hundred input tokens held: the answer's usage (3) is charged only when it was read.
const bigRequest = (variant: string) => ({ model: 'embed-test', user: variant, input: 'the budget holds '.repeat(100) })

it('relays a 32 MiB answer and charges its usage without holding the event loop, while small requests flow', async () => {
  // The small load repeats one request: a loop by the guard's rule, so its key turns the guard off.
  const smallKey = await stack.admin.createKey('small', ['openai'], { unlimited: true, loopLimit: 0 })
  // Warm-up: the proxy's paths, and the counting worker (started on first use).
  for (let i = 0; i < 20; i++) expect((await post(smallKey.key, '/v1/chat/completions', SMALL)).status).toBe(200)
  const warm = await stack.admin.createKey('warm', ['openai'], { unlimited: true })
  expect((await post(warm.key, '/v1/embeddings', bigRequest('plain'))).status).toBe(200)

  for (const variant of Object.keys(ANSWERS)) {
    const key = await stack.admin.createKey(variant, ['openai'], { unlimited: true })
    let done = false
    const small: Array<{ status: number; ms: number }> = []
    const flowing = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!done) small.push(await post(smallKey.key, '/v1/chat/completions', SMALL))
      }),
    )
    const { result, cpuMs } = await longestStretch(probeFile, () => post(key.key, '/v1/embeddings', bigRequest(variant)).finally(() => (done = true)))
    await flowing
    const longest = Math.max(...small.map((r) => r.ms))
    console.log(`big answer (${variant}, ${(ANSWERS[variant]!.length / MIB).toFixed(1)} MiB) in ${Math.round(result.ms)} ms: longest CPU stretch of the proxy's event loop ${cpuMs} ms; ${small.length} small requests, longest ${longest.toFixed(1)} ms`)
    expect(result).toMatchObject({ status: 200, bytes: ANSWERS[variant]!.length })
    expect(small.length).toBeGreaterThan(0)
    expect(small.filter((r) => r.status !== 200)).toEqual([])
    // Charged the answer's usage (embed-test: 1 µUSD per input token), not the hold, once settled.
    await expect.poll(async () => (await stack.admin.status(key.record.hash))!.daily).toMatchObject({ spentMicros: BIG_USAGE_TOKENS, heldMicros: 0 })
    expect(cpuMs).toBeLessThan(MAX_CPU_STRETCH_MS)
  }
}, 120_000)
