import { readdirSync, readFileSync } from 'node:fs'
import { createAnthropicAdapter } from '../../src/providers/anthropic.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import { createOpenAiAdapter } from '../../src/providers/openai.js'
import type { Json } from '../../src/providers/body.js'
import type { LoopShape } from '../../src/loop/types.js'
import type { ProviderAdapter } from '../../src/providers/types.js'

/** Agent transcripts of test/fixtures/loops replayed as the requests their agents sent, in order. */

export interface LoopFixtureRequest {
  atSeconds: number
  session: string | null
  body: Json
}

export interface LoopFixture {
  name: string
  description: string
  /** Index of the first request the default rule refuses; null for a healthy transcript. */
  tripsAt: number | null
  /** The fixture's shape name (`openai-chat`, `responses`, `anthropic`, `gemini`, `bedrock-converse`). */
  shapeName: string
  shape: LoopShape
  requests: LoopFixtureRequest[]
}

interface FixtureFile {
  description: string
  shape: string
  tripsAt: number | null
  requests?: { at: number; session: string | null; body: Json }[]
  // A transcript form: request k sends `template` with `list` = transcript[0, cuts[k]), intervalSeconds apart.
  template?: Json
  list?: string
  transcript?: unknown[]
  cuts?: number[]
  intervalSeconds?: number
  session?: string | null
}

const DIR = new URL('../fixtures/loops/', import.meta.url)

/** Each fixture shape through the adapter that serves it, so the fixtures also cover `loopShape(route)`. */
const SHAPES: Record<string, [ProviderAdapter, string]> = {
  'openai-chat': [createOpenAiAdapter({ baseUrl: 'https://openai.test', apiKey: null }), '/v1/chat/completions'],
  responses: [createOpenAiAdapter({ baseUrl: 'https://openai.test', apiKey: null }), '/v1/responses'],
  anthropic: [createAnthropicAdapter({ baseUrl: 'https://anthropic.test', apiKey: null }), '/v1/messages'],
  gemini: [createGeminiAdapter({ baseUrl: 'https://gemini.test', apiKey: null }), '/v1beta/models/gemini-2.5-flash:generateContent'],
  'bedrock-converse': [
    createBedrockAdapter({ baseUrl: 'https://bedrock.test', apiKey: null, aws: null, region: 'us-east-1' }),
    '/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse',
  ],
}

export function shapeFor(name: string): LoopShape {
  const entry = SHAPES[name]
  if (entry === undefined) throw new Error(`unknown fixture shape ${name}`)
  const [adapter, path] = entry
  const route = adapter.findRoute('POST', path, new URLSearchParams())
  const shape = route === null ? null : (adapter.loopShape?.(route) ?? null)
  if (shape === null) throw new Error(`${adapter.id} has no loop shape for ${path}`)
  return shape
}

export function loadLoopFixtures(): LoopFixture[] {
  return readdirSync(DIR)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const data = JSON.parse(readFileSync(new URL(file, DIR), 'utf8')) as FixtureFile
      return { name: file.replace(/\.json$/, ''), description: data.description, tripsAt: data.tripsAt, shapeName: data.shape, shape: shapeFor(data.shape), requests: requestsOf(data) }
    })
}

function requestsOf(data: FixtureFile): LoopFixtureRequest[] {
  if (data.requests !== undefined) return data.requests.map((r) => ({ atSeconds: r.at, session: r.session, body: r.body }))
  const { template, list, transcript, cuts } = data
  if (template === undefined || list === undefined || transcript === undefined || cuts === undefined) throw new Error('incomplete transcript fixture')
  return cuts.map((cut, k) => ({
    atSeconds: k * (data.intervalSeconds ?? 5),
    session: data.session ?? null,
    // A fresh body per request, as each agent request is a fresh JSON document.
    body: structuredClone({ ...template, [list]: transcript.slice(0, cut) }),
  }))
}
