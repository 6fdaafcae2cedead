import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const LOGGER = fileURLToPath(new URL('../../dist/logger.js', import.meta.url))

// stdout is buffered (4 KiB) for speed; a quiet proxy's line must still show within about a second, while it runs.
it('a single log line reaches stdout within about a second, long before the process ends', async () => {
  const script = `const { createLogger } = await import(${JSON.stringify(LOGGER)}); createLogger('info').info({ n: 1 }, 'quiet line'); setTimeout(() => {}, 10_000)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const started = performance.now()
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8')
        if (out.includes('\n')) resolve(out)
      })
      child.on('exit', (code) => reject(new Error(`exited (${code}) before writing a line`)))
      setTimeout(() => reject(new Error('no line within 5 s')), 5_000)
    })
    expect(performance.now() - started).toBeLessThan(3_000)
    expect(JSON.parse(line)).toMatchObject({ msg: 'quiet line', n: 1, service: 'loopers' })
    expect(child.exitCode).toBeNull()
  } finally {
    child.kill()
  }
})

// A line still buffered when the process exits is written on the way out, not lost.
it('a buffered line reaches stdout when the process exits right after it', async () => {
  const script = `const { createLogger } = await import(${JSON.stringify(LOGGER)}); createLogger('info').info({ n: 2 }, 'last line'); process.exit(0)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  expect(code).toBe(0)
  expect(JSON.parse(out.trim())).toMatchObject({ msg: 'last line', n: 2 })
})
