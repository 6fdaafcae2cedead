// CPU cost of the loop guard's fingerprint on a parsed body (the pipeline parses JSON once anyway).
// The last scenario is adversarial: V8 enumerates a dictionary-mode object's keys in O(n log n) before
// the first one, so a huge object in the newest turn costs about what the pipeline's own walk of it does.
// `npm run build && node bench/loop-fingerprint.mjs [--seconds=1]`; prints one JSON line per scenario:
// microseconds per fingerprint (median of rounds), and JSON.parse of the same body for scale.
import { fingerprintRequest } from '../dist/loop/fingerprint.js'
import { messagesShape } from '../dist/loop/shapes/messages.js'
import { responsesShape } from '../dist/loop/shapes/responses.js'

const seconds = Number(process.argv.find((a) => a.startsWith('--seconds='))?.slice(10) ?? 1)
const text = (bytes, seed) => `${seed} `.padEnd(bytes, 'lorem ipsum dolor sit amet ')

function chatAgent(turns, resultBytes) {
  const messages = [{ role: 'system', content: text(2_000, 'system') }, { role: 'user', content: 'Make the test suite pass.' }]
  for (let i = 0; i < turns; i++) {
    const id = `call_${i}`
    messages.push({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'read_file', arguments: JSON.stringify({ path: `src/f${i}.ts` }) } }] })
    messages.push({ role: 'tool', tool_call_id: id, content: text(resultBytes, `file ${i}`) })
  }
  return { model: 'gpt-4o', stream: true, messages }
}

function responsesAgent(turns, resultBytes) {
  const input = [{ role: 'user', content: 'Book a flight.' }]
  for (let i = 0; i < turns; i++) {
    input.push({ type: 'reasoning', id: `rs_${i}`, summary: [], encrypted_content: text(800, `r${i}`) })
    input.push({ type: 'function_call', id: `fc_${i}`, call_id: `call_${i}`, name: 'search', arguments: JSON.stringify({ q: `q${i}` }) })
    input.push({ type: 'function_call_output', call_id: `call_${i}`, output: text(resultBytes, `result ${i}`) })
  }
  return { model: 'gpt-5', instructions: text(2_000, 'instructions'), input }
}

const TEN_MIB = 10 * 1024 * 1024
const scenarios = [
  ['openai-chat 20 turns, 1 KiB results', messagesShape, chatAgent(20, 1_024)],
  ['responses 20 turns, 1 KiB results', responsesShape, responsesAgent(20, 1_024)],
  ['openai-chat 10 MiB: 20 turns, one 10 MiB result last', messagesShape, (() => { const b = chatAgent(20, 1_024); b.messages.at(-1).content = text(TEN_MIB, 'huge'); return b })()],
  ['openai-chat 10 MiB: 5,000 turns of 2 KiB', messagesShape, chatAgent(5_000, 2_048)],
  ['openai-chat 10 MiB: 100,000 short user messages', messagesShape, { messages: Array.from({ length: 100_000 }, (_, i) => ({ role: 'user', content: text(100, `m${i}`) })) }],
  ['anthropic 10 MiB: 100,000 content blocks in the last message', messagesShape, { messages: [{ role: 'user', content: Array.from({ length: 100_000 }, (_, i) => ({ type: 'text', text: text(100, `b${i}`) })) }] }],
  ['anthropic 10 MiB: tool input with 400,000 keys', messagesShape, { messages: [{ role: 'user', content: 'go' }, { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'f', input: Object.fromEntries(Array.from({ length: 400_000 }, (_, i) => [`key_${i}`, text(12, i)])) }] }] }],
]

for (const [name, shape, body] of scenarios) {
  const json = JSON.stringify(body)
  const parseMicros = time(() => JSON.parse(json), Math.min(seconds, 0.5))
  const micros = time(() => fingerprintRequest(shape, body), seconds)
  process.stdout.write(`${JSON.stringify({ scenario: name, body_bytes: Buffer.byteLength(json), fingerprint_us: round(micros), json_parse_us: round(parseMicros) })}\n`)
}

/** Median microseconds per call over rounds of about 20 ms (at least one call), for `budget` seconds. */
function time(run, budget) {
  const warm = performance.now() + 200
  for (let i = 0; i < 50 && performance.now() < warm; i++) run()
  const rounds = []
  const end = performance.now() + budget * 1000
  while (performance.now() < end) {
    let calls = 0
    const start = performance.now()
    while (performance.now() - start < 20) {
      run()
      calls++
    }
    rounds.push(((performance.now() - start) * 1000) / calls)
  }
  rounds.sort((a, b) => a - b)
  return rounds[rounds.length >> 1]
}

function round(value) {
  return Math.round(value * 10) / 10
}
