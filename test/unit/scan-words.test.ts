import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createWordSet, findDuplicateKey, scanKeys, type KeyReport } from '../../src/http/json-keys.js'
import { readParsedBody, type RequestBody } from '../../src/proxy/request-body.js'
import { NOTHING_SCANNED, SCAN_WORDS, scanBody } from '../../src/tokens/bound.js'

// Issue 12: the duplicate-key scan also tells whether a body can hold a media part, fetched content or a Gemini
// file; a body that cannot is not walked a second time for them. Skipping the walk must never change its answer.

const WORDS = createWordSet(SCAN_WORDS)

async function report(text: string, sliceBytes?: number, sliceSteps?: number): Promise<KeyReport> {
  return scanKeys(Buffer.from(text), WORDS, sliceBytes, sliceSteps)
}

// Bodies whose walk finds something: each media type, medium key and fetched source, spelled out or escaped.
const FINDS = [
  { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA' } }] }] },
  { input: [{ content: [{ type: 'input_image', image_url: 'https://x' }] }] },
  { input: [{ content: [{ type: 'input_file', file_id: 'file-1' }] }] },
  { messages: [{ content: [{ type: 'input_audio', input_audio: { data: 'AA', format: 'wav' } }] }] },
  { messages: [{ content: [{ type: 'file', file: { file_id: 'file-1' } }] }] },
  { messages: [{ content: [{ type: 'document_url', document_url: 'https://x' }] }] },
  { messages: [{ content: [{ type: 'image', source: { type: 'base64', data: 'AA' } }] }] },
  { messages: [{ content: [{ type: 'document', source: { type: 'url', url: 'https://x' } }] }] },
  { messages: [{ content: [{ type: 'container_upload', file_id: 'f' }] }] },
  { contents: [{ parts: [{ inlineData: { mimeType: 'image/png', data: 'AA' } }] }] },
  { contents: [{ parts: [{ inline_data: { mime_type: 'image/png', data: 'AA' } }] }] },
  { contents: [{ parts: [{ fileData: { fileUri: 'https://f/1' } }] }] },
  { contents: [{ parts: [{ file_data: { file_uri: 'https://f/1' } }] }] },
  { messages: [{ content: [{ image: { format: 'png', source: { bytes: 'AA' } } }] }] },
  { messages: [{ content: [{ document: { format: 'pdf', name: 'd', source: { bytes: 'AA' } } }] }] },
  { messages: [{ content: [{ video: { format: 'mp4', source: { s3Location: { uri: 's3://b/v.mp4' } } } }] }] },
  { messages: [{ content: [{ x: { s3_location: { uri: 's3://b/v.mp4' } } }] }] },
]

// Escapes JSON allows: every character of `key` or of the string value `word` as \uXXXX, or one of them.
const escapeAll = (word: string) => [...word].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')
const escapeOne = (word: string, at: number) => `${word.slice(0, at)}${escapeAll(word[at] as string)}${word.slice(at + 1)}`

describe('scan words', () => {
  it('every body whose walk finds something is flagged, however its scan is sliced', async () => {
    for (const body of FINDS) {
      expect(await scanBody(body)).not.toEqual(NOTHING_SCANNED)
      for (const [bytes, steps] of [[undefined, undefined], [1, 1], [7, 3]] as const) {
        expect((await report(JSON.stringify(body), bytes, steps)).wordSeen, JSON.stringify(body)).toBe(true)
      }
    }
  })

  it.each(SCAN_WORDS.map((word) => [word]))('flags %s as a key and as a type, spelled out or escaped anyhow', async (word) => {
    for (const spelled of [word, escapeAll(word), escapeOne(word, 0), escapeOne(word, word.length - 1)]) {
      expect((await report(`{"a":[{"${spelled}":{}}]}`)).wordSeen, spelled).toBe(true)
      expect((await report(`{"a":[{"x":1,"type":"${spelled}"}]}`)).wordSeen, spelled).toBe(true)
    }
    // An escaped `type` key is a type key.
    expect((await report(`{"a":[{"${escapeOne('type', 3)}":"${word}"}]}`)).wordSeen).toBe(true)
    // An escaped backslash before a u is not an escape, but is flagged all the same (harmless).
    expect((await report(`{"x${'\\\\'}u0000":1}`)).wordSeen).toBe(true)
  })

  it('does not flag a word in text, as the value of another key, in an array, or a longer or shorter string', async () => {
    const plain = [
      { model: 'gpt-4o', messages: [{ role: 'user', content: 'read the image file and the document, then the video' }] },
      { messages: [{ role: 'user', name: 'image', content: 'file' }], tags: ['image', 'file', 'inlineData'] },
      { messages: [{ content: [{ type: 'text', text: 'image_url' }, { type: 'images' }, { type: 'fil' }, { type: 'imag\\e' }] }] },
      { tools: [{ type: 'function', function: { name: 'read_file', parameters: { type: 'object', properties: { path: { type: 'string' } } } } }] },
    ]
    for (const body of plain) {
      expect(await scanBody(body)).toEqual(NOTHING_SCANNED)
      expect((await report(JSON.stringify(body))).wordSeen, JSON.stringify(body)).toBe(false)
      expect((await report(JSON.stringify(body), 1, 1)).wordSeen).toBe(false)
    }
  })

  it('reports the repeated key as findDuplicateKey does, and counts a repeat as a word (the scan stopped there)', async () => {
    for (const text of ['{"a":1,"a":2}', '{"m":[{"b":{"c":1}},{"c":2,"c":3}]}', '{"a":{"a":1},"b":2}', '{"t\\u0079pe":1,"type":2}']) {
      const found = await findDuplicateKey(Buffer.from(text))
      const keys = await report(text)
      expect(keys.duplicate).toBe(found)
      if (found !== null) expect(keys.wordSeen).toBe(true)
    }
  })

  it('never skips a walk that finds something: the request fixtures and every body of this file, as the pipeline reads them', async () => {
    const fixtures = join(import.meta.dirname, '../fixtures')
    const bodies: string[] = [...FINDS].map((b) => JSON.stringify(b))
    for (const dir of readdirSync(fixtures)) {
      for (const file of readdirSync(join(fixtures, dir))) {
        if (!file.endsWith('.json')) continue
        const text = readFileSync(join(fixtures, dir, file), 'utf8')
        try {
          if (typeof JSON.parse(text) === 'object') bodies.push(text)
        } catch {}
      }
    }
    expect(bodies.length).toBeGreaterThan(FINDS.length)
    for (const text of bodies) {
      let read: RequestBody
      try {
        read = await readParsedBody(Buffer.from(text), null)
      } catch {
        continue
      }
      expect(await read.scan(), text.slice(0, 200)).toEqual(await scanBody(JSON.parse(text)))
    }
  })

  it('answers a body with none of the words without walking it', () => {
    const read = readParsedBody(Buffer.from('{"model":"gpt-4o","messages":[{"role":"user","content":"an image of a file"}]}'), null) as RequestBody
    expect(read.scan()).toBe(NOTHING_SCANNED)
    const media = readParsedBody(Buffer.from('{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}'), null) as RequestBody
    expect(media.scan()).toEqual({ mediaParts: 1, fetchesContent: false, fileData: false })
  })

  it('refuses a word set it could not match byte for byte', () => {
    expect(() => createWordSet(['im"age'])).toThrow()
    expect(() => createWordSet(['imäge'])).toThrow()
  })
})

describe('scan words against the walk itself', () => {
  // Every property name and string literal src/tokens/bound.ts reads or compares: a key or `type` value a future
  // change makes the walk depend on shows up here, and random bodies built from them find it if SCAN_WORDS lacks it.
  const source = readFileSync(join(import.meta.dirname, '../../src/tokens/bound.ts'), 'utf8')
  const vocabulary = [
    ...new Set([
      ...[...source.matchAll(/\b(?:node|record|block|source|file)\.([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1] as string),
      ...[...source.matchAll(/'([A-Za-z_][A-Za-z0-9_]*)'/g)].map((m) => m[1] as string),
      'text',
      'content',
    ]),
  ]

  const { body } = fc.letrec((tie) => ({
    body: fc.record({ messages: fc.array(tie('value'), { minLength: 1, maxLength: 2 }) }),
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constantFrom(...vocabulary), fc.array(tie('value'), { maxLength: 2 }), tie('object')),
    object: fc.dictionary(fc.oneof(fc.constant('type'), fc.constantFrom(...vocabulary)), tie('value'), { minKeys: 1, maxKeys: 3 }),
  }))

  it('flags every random body built from the walk\'s own names whose walk finds something', async () => {
    expect(vocabulary).toEqual(expect.arrayContaining(['inlineData', 's3Location', 'source', 'file_id']))
    let found = 0
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const scan = await scanBody(b)
        if (scan.mediaParts === 0 && !scan.fetchesContent && !scan.fileData) return
        found += 1
        expect((await report(JSON.stringify(b))).wordSeen).toBe(true)
      }),
      { numRuns: 20_000, seed: 12 },
    )
    // The bodies do reach the walk's findings (else this test could not fail).
    expect(found).toBeGreaterThan(1_000)
  })
})
