// The `--body=BYTES` and `--guard` options of the A/B scripts (ab.mjs, alloc.mjs, perf-profile.mjs): what every
// side, the floor included, sends instead of the bench's one-line chat request.
//   --body=BYTES   a realistic agent request (bench/agent-body.mjs) about BYTES long; each request a new step
//                  (its last user turn names a step number no request of the run used before, on any side)
//   --stream       the request (agent or one-liner) asks for a stream (`"stream":true`, no stream_options: the proxy
//                  adds include_usage, so the proxies' answers carry one usage chunk more than the floor's)
//   --usage        with --stream: the request asks for usage itself (`"stream_options":{"include_usage":true}`), so
//                  the proxy edits nothing and every side, the floor included, is served the same answer
//   --shape=chat|anthropic  with --body: the agent request as OpenAI chat (the default) or as an Anthropic Messages
//                  request (content blocks; sent to /anthropic/v1/messages with x-api-key: the proxies then need
//                  `proxyEnv`, the Anthropic upstream at the fake's URL)
//   --guard        the sides' key keeps the default loop guard (the bench key has it off: loop_limit 0); every
//                  request is then a new step of one conversation, whose scope fills and is trimmed (the worst case)
import { agentBody } from './agent-body.mjs'

export const ONE_LINE_BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })
const STEP_MARK = 'Continue with step 0.'

// One counter for every side of a run: no two requests share a step (a repeat would be a loop to the guard).
let nextStep = 1

const NO_ENV = () => ({})
const OPENAI = ['openai']

/** `base` (a request of requestPair, its key in `authorization`) sent to Anthropic Messages instead: path and headers. */
function anthropicRoute(base) {
  const key = base.headers.authorization.replace(/^Bearer /, '')
  return { path: '/anthropic/v1/messages', headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' } }
}

/**
 * The body option of `argv`: { bytes (null: the one-liner), label, fake (fake upstream options), proxyEnv(fakeUrl) (the proxies' extra environment), providers (the bench key's), request(base) } where `request` wraps a
 * request of requestPair into one whose body is read anew on each send (undici reads `body` per request).
 */
export function bodyOption(argv = process.argv) {
  const value = argv.find((a) => a.startsWith('--body='))?.slice('--body='.length)
  const streamed = argv.includes('--stream')
  const usage = argv.includes('--usage')
  if (usage && !streamed) throw new Error('--usage needs --stream')
  const asked = streamed ? `"stream":true,${usage ? '"stream_options":{"include_usage":true},' : ''}` : ''
  const streamLabel = streamed ? `, streamed${usage ? ' (usage asked by the client)' : ''}` : ''
  if (value === undefined) {
    if (!streamed) return { bytes: null, label: 'one-line body', fake: {}, proxyEnv: NO_ENV, providers: OPENAI, request: (base) => base }
    // The one-liner, streamed: the same body every time (with --guard, its repeats are a loop the guard stops).
    const line = ONE_LINE_BODY.replace('{"model":"bench-model",', `{"model":"bench-model",${asked}`)
    return { bytes: line.length, label: `one-line body${streamLabel}`, fake: {}, proxyEnv: NO_ENV, providers: OPENAI, request: (base) => ({ ...base, body: line }) }
  }
  const bytes = Number(value)
  if (!(bytes > 0)) throw new Error(`--body must be a byte count, not ${value}`)
  const shape = argv.find((a) => a.startsWith('--shape='))?.slice('--shape='.length) ?? 'chat'
  const plain = agentBody({ bytes, step: 0, shape })
  const model = /^\{"model":"[^"]*",/.exec(plain)?.[0] ?? ''
  const text = streamed ? plain.replace(model, `${model}${asked}`) : plain
  if (streamed && text === plain) throw new Error('agentBody no longer opens with its model')
  const at = text.indexOf(STEP_MARK)
  if (at < 0 || text.indexOf(STEP_MARK, at + 1) >= 0) throw new Error('agentBody no longer names its step once')
  const head = text.slice(0, at + STEP_MARK.length - 2)
  const tail = text.slice(at + STEP_MARK.length - 1)
  return {
    bytes: text.length,
    label: `agent body of ${text.length} bytes${shape === 'chat' ? '' : ` (${shape})`}${streamLabel}`,
    // The fake upstream bills the prompt by its bytes, not by tiktoken: counting 100 KB per answer would cap the
    // load it can serve (on the other core) far below what the sides can take. The proxies' work is the same.
    fake: { promptTokens: 'bytes' },
    // The proxies' environment for the shape: Anthropic's upstream is the fake too.
    providers: shape === 'anthropic' ? ['anthropic'] : OPENAI,
    proxyEnv: (fakeUrl) => (shape === 'anthropic' ? { LOOPERS_ANTHROPIC_BASE_URL: fakeUrl, LOOPERS_ANTHROPIC_API_KEY: 'anthropic-bench-upstream' } : {}),
    request: (base) => ({
      ...base,
      ...(shape === 'anthropic' ? anthropicRoute(base) : {}),
      get body() {
        return `${head}${nextStep++}${tail}`
      },
    }),
  }
}

/** Whether `--guard` was given: the sides' key keeps the default loop guard. */
export const guardOn = (argv = process.argv) => argv.includes('--guard')
