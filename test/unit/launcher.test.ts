import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

/**
 * Every way to start the proxy gives node the same flags (V8's young generation bounded, so 1,000 open streams
 * do not grow it to 128 MiB of semi-spaces on a large machine): the `loopers` bin's first line, the Docker
 * image's launcher and `npm start`.
 */
const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')
const flagsOf = (text: string): string[] => text.trim().split(/\s+/).filter((word) => word.startsWith('--'))

describe('launcher flags', () => {
  const shebang = read('src/cli.ts').split('\n', 1)[0] ?? ''
  const bin = /^#!\/usr\/bin\/env -S node((?: --[a-z-]+=\S+)*)$/.exec(shebang)

  it('the bin runs node through `env -S` with the launcher flags', () => {
    expect(bin, shebang).not.toBeNull()
    expect(flagsOf(bin?.[1] ?? '')).toEqual(['--max-semi-space-size=16'])
  })

  it('docker/loopers and `npm start` give node the same flags', () => {
    const flags = flagsOf(bin?.[1] ?? '')
    const exec = read('docker/loopers').split('\n').find((line) => line.startsWith('exec node ')) ?? ''
    expect(exec).toBe(`exec node ${flags.join(' ')} "$app/dist/cli.js" "$@"`)
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start
    expect(start).toBe(`node ${flags.join(' ')} dist/cli.js serve`)
  })
})
