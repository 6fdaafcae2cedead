import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { service, type ComposeFile } from '../support/docker-files.js'

/**
 * The documented configuration cannot drift from the code: `.env.example` names exactly the
 * variables src/config.ts reads (plus REDIS_PASSWORD, which only docker-compose.yml uses), and each
 * one a user sets in `.env` reaches the container.
 */

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

/** The keys of the zod schema object in src/config.ts (what `envSchema` returns): the variables it reads. */
function configVariables(): string[] {
  const source = read('src/config.ts')
  const start = source.indexOf('  return z.object({', source.indexOf('function envSchema('))
  const end = source.indexOf('\n  })', start)
  if (start < 0 || end < 0) throw new Error('src/config.ts: cannot find `function envSchema(…) { … return z.object({ … }) }`')
  return [...source.slice(start, end).matchAll(/^\s+([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!)
}

const configVars = configVariables()
const lines = read('.env.example').split('\n')
const namesMatching = (pattern: RegExp): string[] => lines.flatMap((l) => pattern.exec(l)?.[1] ?? [])
/** `NAME=` lines: set through `.env`. */
const active = namesMatching(/^([A-Z][A-Z0-9_]*)=/)
/** `# NAME=` lines: documented, but fixed by docker-compose.yml. */
const commented = namesMatching(/^#\s?([A-Z][A-Z0-9_]*)=/)
const composeEnv = service(parseYaml(read('docker-compose.yml')) as ComposeFile, 'loopers').environment ?? {}
const isVariable = (line: string): boolean => /^#?\s?[A-Z][A-Z0-9_]*=/.test(line)

describe('.env.example', () => {
  it('names exactly the variables src/config.ts reads, plus REDIS_PASSWORD, each once', () => {
    expect(configVars.length).toBeGreaterThan(20)
    const named = [...active, ...commented]
    expect(named.length).toBe(new Set(named).size)
    expect(named.filter((n) => n !== 'REDIS_PASSWORD').sort()).toEqual([...configVars].sort())
    expect(active).toContain('REDIS_PASSWORD')
  })

  it('every variable set in .env reaches the container; the others are fixed by docker-compose.yml', () => {
    for (const name of active.filter((n) => n !== 'REDIS_PASSWORD')) expect(composeEnv[name], name).toBe(`\${${name}:-}`)
    for (const name of commented) expect(composeEnv[name] ?? 'not passed', name).not.toMatch(/^\$\{[A-Z0-9_]+:-\}$/)
    // REDIS_PASSWORD reaches the container only for the entry script's check that it fits in REDIS_URL.
    expect(Object.keys(composeEnv).sort()).toEqual([...configVars.filter((n) => n !== 'REDIS_CLUSTER_NODES'), 'REDIS_PASSWORD'].sort())
  })

  it('holds no values, and a comment documents every variable', () => {
    for (const line of lines) {
      const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line)
      if (match) expect(match[2], match[1]).toBe('')
    }
    lines.forEach((line, i) => {
      if (!isVariable(line)) return
      let j = i - 1
      while (j >= 0 && isVariable(lines[j]!)) j--
      expect(lines[j] ?? '', `comment above ${line}`).toMatch(/^# \S/)
    })
    const password = lines.findIndex((l) => l.startsWith('REDIS_PASSWORD='))
    expect(lines.slice(Math.max(0, password - 3), password).join('\n')).toMatch(/CHANGE ME/)
  })
})
