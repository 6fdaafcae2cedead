import { describe, expect, it } from 'vitest'
import { createWordSet, keyReportOfParsed, scanKeys, type KeyReport } from '../../src/http/json-keys.js'
import { readParsedBody } from '../../src/proxy/request-body.js'
import { SCAN_WORDS } from '../../src/tokens/bound.js'
import { seededRandom } from '../support/seeded-random.js'

// Issue 12: a small parsed body is told free of repeated keys by counting its members against its colons, and
// scanned only when that fails. The duplicate-key rule is a security rule: the count may decline (null), never
// vouch for a body the scan refuses, and its word report must be true whenever a word is there.

const WORD_SET = createWordSet(SCAN_WORDS)
const WORD_STRINGS = new Set(SCAN_WORDS)
const counted = (text: string): KeyReport | null => keyReportOfParsed(Buffer.from(text), JSON.parse(text), WORD_STRINGS)
const scanned = (text: string): KeyReport => scanKeys(Buffer.from(text), WORD_SET) as KeyReport

describe('a key report told from the parsed body', () => {
  it.each([
    ['the one-line chat', '{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}', false],
    ['whitespace, arrays, literals', '{ "a" : [ 1 , { "b" : null } , [ ] ] ,\n"c" : { } }', false],
    ['a medium key', '{"contents":[{"parts":[{"inlineData":{"data":"AA"}}]}]}', true],
    ['a media type', '{"messages":[{"content":[{"type":"input_audio","input_audio":{"data":"AA"}}]}]}', true],
    ['a word as a type key’s value spelled with an escape', '{"m":[{"type":"im\\u0061ge"}]}', true],
    ['a word as a value of another key', '{"note":"image"}', false],
  ])('%s: vouched for, as the scan has it', (_name, text, wordSeen) => {
    expect(counted(text)).toEqual({ duplicate: null, wordSeen })
    expect(scanned(text).duplicate).toBeNull()
    if (wordSeen) expect(scanned(text).wordSeen).toBe(true)
  })

  it.each([
    ['a top-level repeat', '{"stream":false,"model":"m","stream":true}'],
    ['a nested repeat', '{"messages":[{"role":"user","content":"x","role":"system"}]}'],
    ['a repeat spelled with an escape', '{"a":1,"\\u0061":2}'],
    ['a repeated __proto__', '{"__proto__":1,"__proto__":2}'],
    ['a repeated type hiding a file part', '{"c":[{"type":"text","type":"file","file":{"file_id":"f"}}]}'],
    ['a repeat beside a colon in a string', '{"a":"x:y","a":1}'],
  ])('%s: declined, and the scan refuses it', (_name, text) => {
    expect(counted(text)).toBeNull()
    expect(scanned(text).duplicate).not.toBeNull()
  })

  it('declines a body with a colon in a string (the scan decides)', () => {
    expect(counted('{"url":"https://example.com"}')).toBeNull()
  })

  it('declines at the first string holding a colon, before it walks the parsed body', () => {
    const text = '{"url":"https://example.com","a":{"b":1}}'
    // A parsed body whose walk throws: declining must not reach it.
    const untouchable = new Proxy({}, { ownKeys: () => { throw new Error('walked') }, get: () => { throw new Error('walked') } })
    expect(keyReportOfParsed(Buffer.from(text), untouchable, WORD_STRINGS)).toBeNull()
  })

  it.each([
    ['an escaped quote', '{"a":"\\"","b":1}'],
    ['an escaped backslash before the closing quote', '{"a":"\\\\","b":{"c":"\\\"x"}}'],
  ])('reads strings with %s to their end: vouched for, as the scan has it', (_name, text) => {
    expect(counted(text)).toEqual({ duplicate: null, wordSeen: false })
    expect(scanned(text).duplicate).toBeNull()
  })

  it.each([
    ['after an escaped quote', '{"a":"\\":1","a":2}'],
    ['in a key', '{"a:b":1,"a:b":2}'],
  ])('declines a colon in a string %s, and the scan refuses the repeat', (_name, text) => {
    expect(counted(text)).toBeNull()
    expect(scanned(text).duplicate).not.toBeNull()
  })

  it('counts own keys only: an enumerable key on Object.prototype does not stand in for a repeat', () => {
    // One object, one repeat: an inherited key counted would make up for it exactly.
    const text = '{"a":1,"a":2}'
    Object.defineProperty(Object.prototype, 'polluted', { value: 1, enumerable: true, configurable: true, writable: true })
    try {
      expect(counted(text)).toBeNull()
    } finally {
      delete (Object.prototype as Record<string, unknown>).polluted
    }
  })

  it('on random small bodies, never vouches for one the scan refuses, and sees every word the scan sees', () => {
    const random = seededRandom(33)
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
    const KEYS = ['a', 'b', 'type', 'image', 'role', '__proto__', 'a\\u0062', 'x:y']
    const STRINGS = ['', 'text', 'image', 'input_file', 'im\\u0061ge', 'a:b', 'https://x', '\\"q\\"']
    const value = (depth: number): string => {
      const r = random()
      if (depth > 3 || r < 0.4) return pick(['1', 'null', 'true', ...STRINGS.map((s) => `"${s}"`)])
      const n = Math.floor(random() * 4)
      if (r < 0.75) return `{${Array.from({ length: n }, () => `"${pick(KEYS)}":${value(depth + 1)}`).join(',')}}`
      return `[${Array.from({ length: n }, () => value(depth + 1)).join(',')}]`
    }
    let vouched = 0
    let refused = 0
    for (let round = 0; round < 5000; round++) {
      const text = `{${Array.from({ length: 1 + Math.floor(random() * 3) }, () => `"${pick(KEYS)}":${value(1)}`).join(',')}}`
      const report = counted(text)
      const scan = scanned(text)
      if (scan.duplicate !== null) {
        refused++
        expect(report, text).toBeNull()
      }
      if (report !== null) {
        vouched++
        expect(scan.duplicate, text).toBeNull()
        expect(report.wordSeen, text).toBe(holdsWord(JSON.parse(text)))
        if (report.wordSeen) expect(scan.wordSeen, text).toBe(true)
      }
    }
    expect(Math.min(vouched, refused)).toBeGreaterThan(500)
  })

  it('a small body with a repeated key is still refused by readParsedBody', () => {
    expect(() => readParsedBody(Buffer.from('{"model":"m","max_tokens":1,"max_tokens":99999}'), null)).toThrow(/max_tokens/)
  })
})

/** Whether a key anywhere in `node`, or a `type` key's string value, is one of SCAN_WORDS (KeyReport.wordSeen's rule). */
function holdsWord(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(holdsWord)
  if (typeof node !== 'object' || node === null) return false
  return Object.entries(node).some(([key, value]) => WORD_STRINGS.has(key) || (key === 'type' && typeof value === 'string' && WORD_STRINGS.has(value)) || holdsWord(value))
}
