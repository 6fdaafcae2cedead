// A realistic agent request (OpenAI chat completions): a system prompt, a dozen tool definitions and a
// conversation of user turns, assistant tool calls and tool results, grown until the JSON is about `bytes` long.
// What a coding agent sends on each step, unlike the bench's one-line "Say hello.": the proxy reads its model,
// limits and messages, and the floor (bench/floor.mjs) forwards its bytes unread.
//   agentBody({ bytes: 32_768 })            the same text for the same arguments (a seeded generator)
//   agentBody({ bytes, step: i })           the last user turn names step i, so requests differ as an agent's do
//   agentBody({ bytes, shape: 'anthropic' }) the same conversation as an Anthropic Messages request (Claude Code's shape):
//                                           a system block, tools with input_schema, content-block arrays with
//                                           tool_use / tool_result blocks (the code in the results escaped as JSON escapes it)
const WORDS = (
  'the a of to in and is for that on with as it by this be are from at or an was which file test function ' +
  'return value error type string number object array import export const let async await promise module ' +
  'request response budget window session stream token model provider proxy limit spend settle reserve ' +
  'config path line column expected received failed passed build compile run check update change fix add ' +
  'remove rename move copy read write open close start stop retry timeout cache index query result status'
).split(' ')

/** A small seeded generator (mulberry32): the same body for the same seed on every machine. */
function generator(seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function prose(random, words) {
  const out = []
  for (let i = 0; i < words; i++) {
    let word = WORDS[Math.floor(random() * WORDS.length)]
    if (i % 11 === 0) word = word[0].toUpperCase() + word.slice(1)
    out.push(i % 11 === 10 ? `${word}.` : word)
  }
  return out.join(' ')
}

function code(random, lines) {
  const out = []
  for (let i = 0; i < lines; i++) {
    const name = WORDS[Math.floor(random() * WORDS.length)]
    const other = WORDS[Math.floor(random() * WORDS.length)]
    out.push(`  const ${name}${i} = await ${other}(${Math.floor(random() * 1000)}, '${name}')`)
  }
  return `export async function run() {\n${out.join('\n')}\n}\n`
}

function tools(random) {
  const names = ['read_file', 'write_file', 'list_dir', 'grep', 'run_tests', 'run_command', 'git_diff', 'git_commit', 'search_docs', 'open_url', 'edit_file', 'ask_user']
  return names.map((name) => ({
    type: 'function',
    function: {
      name,
      description: prose(random, 30),
      parameters: {
        type: 'object',
        properties: {
          path: { type: 'string', description: prose(random, 8) },
          query: { type: 'string', description: prose(random, 8) },
          limit: { type: 'integer', description: prose(random, 6) },
        },
        required: ['path'],
      },
    },
  }))
}

/** The request body as JSON text, about `bytes` long (never shorter); `shape`: 'chat' (OpenAI) or 'anthropic'. */
export function agentBody({ bytes = 32_768, step = 0, seed = 1, shape = 'chat' } = {}) {
  if (shape === 'anthropic') return anthropicBody(bytes, step, seed)
  if (shape !== 'chat') throw new Error(`agentBody: no shape ${shape}`)
  const random = generator(seed)
  const messages = [
    { role: 'system', content: prose(random, 400) },
    { role: 'user', content: `Fix the failing tests in src/app.ts. ${prose(random, 40)}` },
  ]
  const request = { model: 'bench-model', messages, tools: tools(random), max_tokens: 256 }
  let size = JSON.stringify(request).length
  for (let k = 0; size < bytes; k++) {
    const call = { id: `call_${k}`, type: 'function', function: { name: 'read_file', arguments: JSON.stringify({ path: `src/module${k}.ts` }) } }
    const turn = [
      { role: 'assistant', content: prose(random, 25), tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: code(random, 20) },
    ]
    if (k % 3 === 2) turn.push({ role: 'user', content: prose(random, 30) })
    messages.push(...turn)
    size += JSON.stringify(turn).length
  }
  messages.push({ role: 'user', content: `Continue with step ${step}.` })
  return JSON.stringify(request)
}

/** agentBody's Anthropic Messages request: the chat body's conversation in content blocks, as Claude Code sends one. */
function anthropicBody(bytes, step, seed) {
  const random = generator(seed)
  const system = [{ type: 'text', text: prose(random, 400), cache_control: { type: 'ephemeral' } }]
  const messages = [{ role: 'user', content: [{ type: 'text', text: `Fix the failing tests in src/app.ts. ${prose(random, 40)}` }] }]
  const toolList = tools(random).map(({ function: { name, description, parameters } }) => ({ name, description, input_schema: parameters }))
  const request = { model: 'claude-bench', max_tokens: 256, system, tools: toolList, messages }
  let size = JSON.stringify(request).length
  for (let k = 0; size < bytes; k++) {
    const id = `toolu_${String(k).padStart(4, '0')}`
    const results = [{ type: 'tool_result', tool_use_id: id, content: code(random, 20) }]
    if (k % 3 === 2) results.push({ type: 'text', text: prose(random, 30) })
    const turn = [
      { role: 'assistant', content: [{ type: 'text', text: prose(random, 25) }, { type: 'tool_use', id, name: 'read_file', input: { path: `src/module${k}.ts` } }] },
      { role: 'user', content: results },
    ]
    messages.push(...turn)
    size += JSON.stringify(turn).length
  }
  messages.push({ role: 'user', content: [{ type: 'text', text: `Continue with step ${step}.` }] })
  return JSON.stringify(request)
}
