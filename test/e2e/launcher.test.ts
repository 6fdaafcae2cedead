import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

// The bin is run the way npm's link runs it: by its first line (`env -S <variables> node <flags>`), not by `node dist/cli.js`.
it('the built bin runs by itself through its first line, node flags and all', async () => {
  expect(readFileSync(CLI, 'utf8').split('\n', 1)[0]).toBe('#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=1048576 node --max-semi-space-size=16 --min-semi-space-size=4 --no-memory-reducer --initial-old-space-size=128 --no-maglev --v8-pool-size=2 --flush-baseline-code')
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    execFile(CLI, ['--version'], { env: { PATH: process.env.PATH ?? '' }, timeout: 15_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr }),
    ),
  )
  expect(run.code, run.stderr).toBe(0)
  expect(run.stdout.trim()).toBe((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version)
})
