import { readdirSync, readFileSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { countChatTokens } from '../../src/tokens/tiktoken.js'
import { createTokenCounter } from '../../src/tokens/worker.js'

// The counting worker yields the CPU to the event loop when both want the same core: its thread, and only
// it, runs 10 nice steps below the process (src/tokens/worker-thread.ts): ~1/10 of the event loop's share, so a
// count still finishes when the loop is saturated (at nice 19, ~1/70, a 10 MiB count took 14-20 s). CI runs on
// Linux, where /proc shows it.

/** Each thread of this process: its id and nice value (field 19 of /proc/self/task/<tid>/stat). */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>()
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    // Fields after the command name, which may hold spaces: state is field 3, nice field 19.
    nices.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]))
  }
  return nices
}

describe('the counting worker', () => {
  const worker = createTokenCounter()
  afterAll(() => worker.close())

  it('runs its thread 10 nice steps below the process and leaves the process’s other threads at theirs', async () => {
    const before = threadNices()
    await worker.warm([])
    const after = threadNices()
    const started = [...after].filter(([tid]) => !before.has(tid))
    const own = before.get(process.pid) as number
    expect(started.map(([, nice]) => nice)).toContain(Math.min(19, own + 10))
    // Not lower than that: at nice 19 a count starves while the event loop is saturated.
    if (own + 10 < 19) expect(started.map(([, nice]) => nice)).not.toContain(19)
    for (const [tid, nice] of before) if (after.has(tid)) expect(after.get(tid)).toBe(nice)
    expect(after.get(process.pid)).toBe(own)
  })

  it('still finishes an exact count at that priority', async () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'The quick brown fox jumps over the lazy dog. '.repeat(20_000) }] }
    const raw = Buffer.from(JSON.stringify(body))
    const counted = await worker.count({ counter: 'chat', model: 'gpt-4o', factor: 1, raw, limit: Number.MAX_SAFE_INTEGER })
    expect(counted).toEqual({ tokens: countChatTokens(body, 'gpt-4o', Number.MAX_SAFE_INTEGER), media: 0 })
  })

  // An Azure deployment's model is unknown: its count keeps the larger of o200k's and cl100k's, or a prompt whose
  // cl100k count is higher would be reserved below what a gpt-4 deployment bills (a flood overspent by one request).
  it('counts a job for any encoding as the larger of both', async () => {
    const body = { model: 'my-deployment', messages: [{ role: 'user', content: 'Zürich, München, Genève — réunion à 14:00. '.repeat(200) }] }
    const o200k = countChatTokens(body, 'gpt-4o', Number.MAX_SAFE_INTEGER)
    const cl100k = countChatTokens(body, 'gpt-4', Number.MAX_SAFE_INTEGER)
    expect(cl100k).not.toBe(o200k)
    const raw = Buffer.from(JSON.stringify(body))
    const counted = await worker.count({ counter: 'chat', model: 'my-deployment', anyEncoding: true, factor: 1, raw, limit: Number.MAX_SAFE_INTEGER })
    expect(counted).toEqual({ tokens: Math.max(o200k, cl100k), media: 0 })
  })
})
