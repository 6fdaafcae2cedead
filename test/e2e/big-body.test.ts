/**
 * No request may stall the others, however big (issue 8, point 5): while the proxy reads a 10 MiB body —
 * one long prompt, or a transcript of many short messages — counts it exactly and refuses it, or edits and
 * forwards it, its event loop never spends more than a few milliseconds of CPU without turning. The old
 * path parsed, decoded and copied the whole body on the event loop (50-80 ms of CPU in one go). Measured in
 * the proxy's own main-thread CPU time (test/support/loop-cpu-probe.mjs), so a loaded machine does not
 * inflate it. The forwarded big body is what the meter read with only the stream option added.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { countChatTokens } from '../../src/tokens/tiktoken.js'
import { LOOP_CPU_PROBE, longestStretch } from '../support/loop-cpu.js'
import { useSpawnedOpenAiStack } from '../support/spawned-stack.js'

const MIB = 1024 * 1024
/** The longest CPU stretch of the proxy's event loop a big body may cause (the old path: 50-80 ms). */
const MAX_CPU_STRETCH_MS = 20

let dir: string
let probeFile: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'loopers-big-body-'))
  probeFile = join(dir, 'loop-cpu.jsonl')
})

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

const stack = useSpawnedOpenAiStack(() => ({ LOOPERS_MAX_BODY_BYTES: String(11 * MIB), NODE_OPTIONS: `--import ${LOOP_CPU_PROBE}`, LOOPERS_TEST_LOOP_CPU_FILE: probeFile }))

const prose = 'The quick brown fox jumps over the lazy dog while the budget holds. '.repeat(Math.floor((10 * MIB) / 68))
const PROSE = { model: 'gpt-test', max_tokens: 5, messages: [{ role: 'user', content: prose }] }
const TRANSCRIPT = { model: 'gpt-test', max_tokens: 5, messages: Array.from({ length: Math.floor((10 * MIB) / 50) }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `step ${i} ok` })) }

async function send(key: string, body: string): Promise<{ status: number; code: string | null }> {
  const response = await fetch(`${stack.proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body })
  await response.arrayBuffer()
  return { status: response.status, code: response.headers.get('x-loopers-error-code') }
}

it('reads, counts and refuses a 10 MiB body without holding its event loop', async () => {
  // Warm-up: the proxy's paths, the counting worker and its encoder.
  const warm = await stack.admin.createKey('warm', ['openai'], { unlimited: true })
  await stack.admin.setBudget(warm.record.hash, { limits: { daily: 10 } })
  await send(warm.key, JSON.stringify({ ...PROSE, messages: [{ role: 'user', content: 'x'.repeat(100) }] }))
  for (const [name, body] of [['one long prompt', PROSE], ['short messages', TRANSCRIPT]] as const) {
    const key = await stack.admin.createKey(name, ['openai'], { unlimited: true })
    // The byte bound is refused at once; the exact count runs through 95% of the prompt before it stops.
    await stack.admin.setBudget(key.record.hash, { limits: { daily: Math.floor(countChatTokens(body, 'gpt-test') * 0.95) } })
    const raw = JSON.stringify(body)
    const { result, cpuMs } = await longestStretch(probeFile, () => send(key.key, raw))
    console.log(`big body (${name}, ${(raw.length / MIB).toFixed(1)} MiB): longest CPU stretch of the proxy's event loop ${cpuMs} ms`)
    expect(result).toEqual({ status: 429, code: 'budget_exceeded' })
    expect(cpuMs).toBeLessThan(MAX_CPU_STRETCH_MS)
  }
  expect(stack.fake.received).toEqual([])
}, 120_000)

it('forwards a 10 MiB stream request as the bytes it read, with only its usage option added, without holding its event loop', async () => {
  const key = await stack.admin.createKey('forwarded', ['openai'], { unlimited: true })
  // Warm-up: the stream meter's output encoder is built (in slices) by the first stream.
  for (let i = 0; i < 3; i++) {
    expect((await send(key.key, JSON.stringify({ ...PROSE, stream: true, messages: [{ role: 'user', content: `hi ${i}` }] }))).status).toBe(200)
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  stack.fake.received.length = 0
  const body = { ...TRANSCRIPT, stream: true }
  const raw = JSON.stringify(body)
  const { result, cpuMs } = await longestStretch(probeFile, () => send(key.key, raw))
  console.log(`big body (forwarded stream, ${(raw.length / MIB).toFixed(1)} MiB): longest CPU stretch of the proxy's event loop ${cpuMs} ms`)
  expect(result.status).toBe(200)
  expect(stack.fake.received).toHaveLength(1)
  const sent = stack.fake.received[0]!.raw
  // The client's bytes, with `"stream_options":{"include_usage":true}` spliced in before the closing brace.
  expect(sent).toBe(`${raw.slice(0, -1)},"stream_options":{"include_usage":true}}`)
  expect(cpuMs).toBeLessThan(MAX_CPU_STRETCH_MS)
}, 120_000)
