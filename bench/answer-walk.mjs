// Instructions one read of an answer's usage costs (`pickMembers` of src/http/json-pick.ts, what a whole non-streamed
// answer pays after it is relayed), counted by callgrind, which machine load does not move: per build and per answer
// shape, node runs the read --warm times (optimized), then --count more; the count is the difference of two runs' main-
// thread instructions (one with --count reads, one without) over --count. The shapes are as providers send them:
// the bench fake's one-line chat answer, OpenAI's (indented, usage with its *_tokens_details), Anthropic's (usage with
// cache members and a nested cache_creation), Gemini's (indented, usageMetadata with arrays of details) and
// Mistral's (usage first). Also checks each read equals JSON.parse's.
// Measured (warm 100,000, count 50,000; instructions a read, the build of this session's start): fake (329 bytes)
// 15.4k, OpenAI (835) 35.0k, Anthropic (460) 22.7k, Gemini (666) 31.6k, Mistral (352) 15.1k. JSON.parse of the whole
// fake answer (with its toString) is 16.7k: at this size the walk buys nothing over parsing it whole, nor loses. A flat
// walk (one loop, open containers on a stack, whitespace and string bytes told by compares, not tables) read the same
// within ±5 % (15.5k, 34.0k, 22.5k, 33.2k, 15.7k): the cost is the typed array's checked loads per byte, not the recursion.
//   npm run build && node bench/answer-walk.mjs [--dist=dist] [--other=OLD/dist] [--warm=200000] [--count=100000] [--shapes=fake,openai,…]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const WARM = Number(arg('warm', '200000'))
const COUNT = Number(arg('count', '100000'))

const indented = (value) => JSON.stringify(value, null, 2)
const SHAPES = {
  fake: {
    keys: ['usage'],
    text: JSON.stringify({
      id: 'chatcmpl-bench', object: 'chat.completion', created: 1, model: 'bench-model',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today? I am here to answer.', refusal: null }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 12, completion_tokens: 16, total_tokens: 28 },
    }),
  },
  openai: {
    keys: ['usage'],
    text: indented({
      id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT', object: 'chat.completion', created: 1741569952, model: 'gpt-4o-2024-08-06',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I assist you today?', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
      usage: {
        prompt_tokens: 19, completion_tokens: 10, total_tokens: 29,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      },
      service_tier: 'default', system_fingerprint: 'fp_fc9f1d7035',
    }),
  },
  anthropic: {
    keys: ['usage'],
    text: JSON.stringify({
      id: 'msg_01XFDUDYJgAACzvnptvVoYEL', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929',
      content: [{ type: 'text', text: 'Hello! How can I help you today? I\u2019m here to answer.' }], stop_reason: 'end_turn', stop_sequence: null,
      usage: {
        input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 }, output_tokens: 16, service_tier: 'standard',
      },
    }),
  },
  gemini: {
    keys: ['usageMetadata'],
    text: indented({
      candidates: [{ content: { parts: [{ text: 'Hello! How can I help you today?\n' }], role: 'model' }, finishReason: 'STOP', avgLogprobs: -0.0412 }],
      usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 10, totalTokenCount: 22, promptTokensDetails: [{ modality: 'TEXT', tokenCount: 12 }], candidatesTokensDetails: [{ modality: 'TEXT', tokenCount: 10 }] },
      modelVersion: 'gemini-2.0-flash', responseId: 'mE3PZ6TDNvq_z7IP0t2e6AQ',
    }),
  },
  mistral: {
    keys: ['usage'],
    text: JSON.stringify({
      id: '0a1b2c3d4e5f47a8b9c0d1e2f3a4b5c6', object: 'chat.completion', model: 'mistral-small-latest',
      usage: { prompt_tokens: 10, total_tokens: 26, completion_tokens: 16 }, created: 1733227200,
      choices: [{ index: 0, message: { role: 'assistant', tool_calls: null, content: 'Hello! How can I help you today? I am here to answer.' }, finish_reason: 'stop' }],
    }),
  },
}

if (process.argv.includes('--child')) {
  const { pickMembers } = await import(pathToFileURL(join(arg('dist', 'dist'), 'http/json-pick.js')).href)
  const shape = SHAPES[arg('shape', 'fake')]
  const raw = Buffer.from(shape.text)
  const expected = JSON.stringify(Object.fromEntries(shape.keys.map((k) => [k, JSON.parse(shape.text)[k]])))
  if (JSON.stringify(pickMembers(raw, shape.keys)) !== expected) throw new Error(`${arg('shape')}: the read differs from JSON.parse's`)
  let sink = 0
  const n = WARM + Number(arg('n', '0'))
  for (let i = 0; i < n; i++) sink += pickMembers(raw, shape.keys) === null ? 1 : 0
  process.exitCode = sink === 0 ? 0 : 1
} else {
  const dists = [resolve(arg('dist', 'dist')), ...(arg('other', null) === null ? [] : [resolve(arg('other'))])]
  const dir = mkdtempSync(join(tmpdir(), 'answer-walk-'))
  const self = fileURLToPath(import.meta.url)
  /** Main-thread instructions of one child run. */
  const count = (dist, shape, n) => {
    const out = join(dir, 'out')
    execFileSync('valgrind', ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}.%p`, '--compress-strings=no', process.execPath, self, '--child', `--dist=${dist}`, `--shape=${shape}`, `--warm=${WARM}`, `--n=${n}`], { stdio: 'ignore', timeout: 20 * 60_000 })
    const files = readdirSync(dir).filter((f) => f.startsWith('out.') && f.endsWith('-01'))
    const ir = Number(/\n(?:totals|summary): (\d+)/.exec(readFileSync(join(dir, files[0]), 'utf8'))[1])
    for (const f of readdirSync(dir)) rmSync(join(dir, f))
    return ir
  }
  try {
    for (const shape of arg('shapes', Object.keys(SHAPES).join(',')).split(',')) {
      const row = { shape, bytes: Buffer.byteLength(SHAPES[shape].text) }
      for (const dist of dists) row[dist] = Math.round((count(dist, shape, COUNT) - count(dist, shape, 0)) / COUNT)
      console.log(JSON.stringify(row))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
