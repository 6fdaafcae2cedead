import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

/**
 * Every way to start the proxy gives node the same flags (V8's young generation bounded, so 1,000 open streams
 * do not grow it to 128 MiB of semi-spaces on a large machine, and never shrunk below 4 MiB nor by V8's memory
 * reducer, so traffic after a lull is not met by a scavenge every few dozen requests) and the same environment
 * (glibc's mmap threshold fixed, so freed big buffers leave the resident set), and no Maglev tier (whose background
 * compilations left ~10 MiB in malloc arenas with 1,000 streams open) and two V8 background threads rather than
 * four (each keeps a malloc arena; ~1 MiB at idle), and baseline code flushed as bytecode is (what ran only at
 * start-up stayed compiled for good; ~0.6 MiB at idle), and an old-space limit of at least 128 MiB (the idle
 * release's lull collection, which throws away optimized code, waits for 32 MiB of growth with V8's own further
 * off): the `loopers` bin's first line,
 * the Docker image's launcher and `npm start`.
 */
const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')
const flagsOf = (text: string): string[] => text.trim().split(/\s+/).filter((word) => word.startsWith('--'))

describe('launcher flags', () => {
  const shebang = read('src/cli.ts').split('\n', 1)[0] ?? ''
  const bin = /^#!\/usr\/bin\/env -S((?: [A-Z_]+=\S+)*) node((?: --[a-z0-9-]+(?:=\S+)?)*)$/.exec(shebang)

  it('the bin runs node through `env -S` with the launcher environment and flags', () => {
    expect(bin, shebang).not.toBeNull()
    expect(bin?.[1]?.trim()).toBe('MALLOC_MMAP_THRESHOLD_=1048576')
    expect(flagsOf(bin?.[2] ?? '')).toEqual(['--max-semi-space-size=16', '--min-semi-space-size=4', '--no-memory-reducer', '--initial-old-space-size=128', '--no-maglev', '--v8-pool-size=2', '--flush-baseline-code'])
  })

  it('docker/loopers and `npm start` give node the same environment and flags', () => {
    const launcher = `env ${bin?.[1]?.trim() ?? ''} node ${flagsOf(bin?.[2] ?? '').join(' ')}`
    const exec = read('docker/loopers').split('\n').find((line) => line.startsWith('exec ')) ?? ''
    expect(exec).toBe(`exec ${launcher} "$app/dist/cli.js" "$@"`)
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start
    expect(start).toBe(`${launcher} dist/cli.js serve`)
  })
})
