import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

/**
 * `loopers demo` as a new user runs it: the built CLI with nothing but PATH and an empty HOME, and a
 * REDIS_URL pointing nowhere that the demo must ignore (it runs on its own throw-away embedded store).
 */

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))
const home = mkdtempSync(join(tmpdir(), 'loopers-demo-home-'))
afterAll(() => rmSync(home, { recursive: true, force: true }))

describe('loopers demo', () => {
  it('shows a request refused and a stream cut off, judged by the fake provider it runs, in well under a minute', async () => {
    const started = Date.now()
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'demo'], { env: { PATH: process.env.PATH ?? '', HOME: home, REDIS_URL: 'redis://127.0.0.1:1' }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr }),
      )
    })
    const ms = Date.now() - started
    expect(run.code, run.stderr + run.stdout).toBe(0)
    expect(run.stderr).toBe('')
    expect(ms).toBeLessThan(30_000)
    const out = run.stdout
    expect(out).toMatch(/^\d+\. stream +200 +CUT OFF after \d+ words: budget_exceeded/m)
    expect(out).toMatch(/^\d+\. request +429 +REFUSED budget_exceeded: .*never reached the provider/m)
    expect(out).toMatch(/^\$ loopers budget status [0-9a-f]{8}$/m)
    expect(out).toMatch(/^daily +\$0\.0005 /m)
    // Only what the proxy admitted reached the fake provider: every 200 line, and not the refusal.
    const admitted = out.match(/^\d+\. (request|stream) +200 /gm) ?? []
    const served = /The fake provider served (\d+) requests: (\d+) input and (\d+) output tokens/.exec(out)
    expect(served, out).not.toBeNull()
    expect(Number(served![1])).toBe(admitted.length)
    // The answered requests' output plus the part of the stream served before the cut.
    const answered = [...out.matchAll(/answered: \d+ input \+ (\d+) output tokens/g)].reduce((sum, m) => sum + Number(m[1]), 0)
    const cutWords = Number(/CUT OFF after (\d+) words/.exec(out)![1])
    expect(Number(served![3])).toBeGreaterThanOrEqual(answered + cutWords)
    expect(Number(served![3])).toBeLessThan(answered + 1000)
    // The books match the provider's bill: what the key was charged against what the fake billed, a few
    // millionths apart at most (the word the meter refused is charged; the provider may write one more). A
    // stream paused to count its prompt at the cut let the fake write on: it billed $0.000609 on this limit.
    const charged = Number(/^daily +\$0\.0005 +\$([\d.]+) /m.exec(out)![1])
    const billed = Number(/output tokens, \$([\d.]+) at list price/.exec(out)![1])
    expect(Math.abs(charged - billed), out).toBeLessThanOrEqual(0.000003)
    // Nothing left behind in the user's home: the demo's store was a temporary file.
    expect(readdirSync(home)).toEqual([])
  })
})
