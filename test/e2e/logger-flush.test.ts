import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const LOGGER = fileURLToPath(new URL('../../dist/logger.js', import.meta.url))

// stdout is buffered (64 KiB) for speed; a quiet proxy's line must still show within about a second, while it runs.
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

// Lines are held until 64 KiB are buffered; a flush (as at SIGTERM, before the process exits) writes them all out first.
it('logger.flush writes every buffered line, summary lines included, before its callback', async () => {
  const script = [
    `const { createLogger, logRequest } = await import(${JSON.stringify(LOGGER)})`,
    `const logger = createLogger('info')`,
    `for (let n = 0; n < 300; n++) { logger.info({ n }, 'line'); logRequest(logger, { key: 'abcdef12', status: 200, outcome: 'ok' }, n) }`,
    `logger.flush(() => process.stderr.write('flushed\\n'))`,
    `setTimeout(() => {}, 10_000)`,
  ].join('\n')
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => (chunk.toString('utf8').includes('flushed') ? resolve() : reject(new Error(chunk.toString('utf8')))))
      child.on('exit', (code) => reject(new Error(`exited (${code}) before the flush`)))
    })
    // What stdout carries by then reaches this process within a moment (a pipe, no buffering in the child).
    await new Promise((resolve) => setTimeout(resolve, 200))
    const lines = out.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines).toHaveLength(600)
    expect(lines.filter((line) => line.msg === 'line').map((line) => line.n)).toEqual(Array.from({ length: 300 }, (_, n) => n))
    expect(lines.filter((line) => line.msg === 'request').map((line) => line.ms)).toEqual(Array.from({ length: 300 }, (_, n) => n))
    expect(child.exitCode).toBeNull()
  } finally {
    child.kill()
  }
})

// A fatal error ends the process; what was buffered before it, summary lines included, is still written.
it('buffered lines reach stdout when an uncaught error ends the process', async () => {
  const script = [
    `const { createLogger, logRequest } = await import(${JSON.stringify(LOGGER)})`,
    `const logger = createLogger('info')`,
    `logRequest(logger, { key: 'abcdef12', status: 200, outcome: 'ok' }, 1.5)`,
    `logger.info({ n: 3 }, 'before the fault')`,
    `setTimeout(() => { throw new Error('fatal') }, 10)`,
  ].join('\n')
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  expect(code).not.toBe(0)
  const lines = out.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  expect(lines).toMatchObject([{ msg: 'request', key: 'abcdef12', ms: 1.5 }, { msg: 'before the fault', n: 3 }])
})

// A quiet logger writes nothing: sonic-boom's own periodic flush wrote an empty buffer every second, a hop to the
// thread pool and back (two thread wake-ups a second) on a proxy at `warn`, which logs no line. A line still
// reaches stdout within about a second, once, also after a quiet stretch.
it('stdout is written only when a line is waiting, within about a second of it', async () => {
  const script = [
    `const fs = (await import('node:fs')).default`,
    `const write = fs.write`,
    `const writes = []`,
    `const started = performance.now()`,
    `fs.write = (fd, bytes, ...rest) => { if (fd === 1) writes.push({ bytes: bytes.length, at: Math.round(performance.now() - started) }); return write(fd, bytes, ...rest) }`,
    `const { createLogger } = await import(${JSON.stringify(LOGGER)})`,
    `const logger = createLogger('info')`,
    `setTimeout(() => logger.info({ n: 4 }, 'after a quiet stretch'), 2_500)`,
    `setTimeout(() => { process.stderr.write(JSON.stringify(writes) + '\\n'); process.exit(0) }, 5_200)`,
  ].join('\n')
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  expect(code).toBe(0)
  const writes = JSON.parse(err.trim()) as { bytes: number; at: number }[]
  // One write, of the line, a second or so after it was logged at 2.5 s; none before it, none empty after it.
  expect(writes).toHaveLength(1)
  expect(writes[0]?.bytes).toBe(Buffer.byteLength(out))
  expect(writes[0]?.at).toBeGreaterThanOrEqual(2_500)
  expect(writes[0]?.at).toBeLessThan(4_500)
  expect(JSON.parse(out.trim())).toMatchObject({ msg: 'after a quiet stretch', n: 4 })
}, 15_000)
