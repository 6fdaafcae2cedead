// Input estimation cost on a generated 1 MB chat prompt: the byte bound versus exact tiktoken counts.
// Run after `npm run build`: `node bench/estimate.mjs [--reference]` (--reference also times js-tiktoken's encode).
import { performance } from 'node:perf_hooks'
import { boundInputTokens } from '../dist/tokens/bound.js'
import { countChatTokens } from '../dist/tokens/tiktoken.js'

const TARGET_BYTES = 1024 * 1024
const MODEL = 'gpt-4o'

const paragraphs = [
  'The quarterly report shows revenue growth of 12% year over year, driven by strong demand in Europe and Asia. ',
  'function merge(a, b) {\n  const out = { ...a };\n  for (const [k, v] of Object.entries(b)) out[k] = v;\n  return out;\n}\n',
  '東京は日本の首都であり、人口は約1400万人です。経済、文化、政治の中心地として知られています。',
  'Zürich, Genève und Basel sind die größten Städte der Schweiz — naïve café résumé. ',
  '{"id": 4821, "status": "shipped", "items": [{"sku": "A-17", "qty": 3}], "note": "leave at door"}\n',
  'Emoji test 😀👍🏽👩‍💻 and symbols ∑∫√ ≤ ≥ ≠ → ← ↑ ↓. ',
]

function buildBody() {
  const messages = [{ role: 'system', content: 'You are a careful analyst. Answer in English.' }]
  let text = ''
  let i = 0
  while (Buffer.byteLength(text) < TARGET_BYTES / 8) text += paragraphs[i++ % paragraphs.length]
  for (let m = 0; m < 8; m++) messages.push({ role: m % 2 === 0 ? 'user' : 'assistant', content: `Part ${m + 1}:\n${text}` })
  messages.push({ role: 'user', content: [{ type: 'text', text: 'Summarise everything above.' }, { type: 'image_url', image_url: { url: 'https://example.com/chart.png' } }] })
  return { model: MODEL, messages, max_tokens: 1024 }
}

function time(fn) {
  const started = performance.now()
  const result = fn()
  return { ms: performance.now() - started, result }
}

const body = buildBody()
const raw = Buffer.from(JSON.stringify(body))
const rows = []
const rssBefore = process.memoryUsage().rss

const parsed = time(() => JSON.parse(raw.toString('utf8')))
rows.push(['JSON.parse of the body (for scale)', parsed.ms, '-'])
const bound = time(() => boundInputTokens(raw, parsed.result, 1600))
rows.push(['byte bound (bytes + media walk)', bound.ms, bound.result])
const bound2 = time(() => boundInputTokens(raw, parsed.result, 1600))
rows.push(['byte bound, again', bound2.ms, bound2.result])
const first = time(() => countChatTokens(parsed.result, MODEL))
rows.push(['exact count, first call (builds o200k)', first.ms, first.result])
const rssAfterBuild = process.memoryUsage().rss
const second = time(() => countChatTokens(parsed.result, MODEL))
rows.push(['exact count, second call', second.ms, second.result])
const limited = time(() => countChatTokens(parsed.result, MODEL, 10_000))
rows.push(['exact count, limit 10,000 tokens', limited.ms, limited.result])

if (process.argv.includes('--reference')) {
  const { Tiktoken } = await import('js-tiktoken/lite')
  const { default: ranks } = await import('js-tiktoken/ranks/o200k_base')
  const build = time(() => new Tiktoken(ranks))
  rows.push(['js-tiktoken: build o200k', build.ms, '-'])
  const texts = parsed.result.messages.map((m) => (typeof m.content === 'string' ? m.content : m.content[0].text))
  const encode = time(() => texts.reduce((sum, t) => sum + build.result.encode(t, [], []).length, 0))
  rows.push(['js-tiktoken: encode message texts', encode.ms, encode.result])
}

console.log(`body: ${raw.length.toLocaleString('en-US')} bytes, ${body.messages.length} messages, model ${MODEL}, node ${process.version}`)
console.log(`rss: ${(rssBefore / 1e6).toFixed(0)} MB before, ${(rssAfterBuild / 1e6).toFixed(0)} MB after the encoder build`)
const width = Math.max(...rows.map((r) => r[0].length))
console.log(`${'step'.padEnd(width)} | ${'ms'.padStart(9)} | tokens`)
console.log(`${'-'.repeat(width)}-|-${'-'.repeat(9)}-|-------`)
for (const [name, ms, tokens] of rows) {
  console.log(`${name.padEnd(width)} | ${ms.toFixed(2).padStart(9)} | ${typeof tokens === 'number' ? tokens.toLocaleString('en-US') : tokens}`)
}
