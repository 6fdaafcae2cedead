import { isProxyKey } from '../keys.js'
import { AmountError, parseUsd } from '../money.js'
import { usageError } from './errors.js'

/** The environment `loopers exec` gives its child: each SDK's and agent CLI's base-URL variables, pointed at Loopers. */

/** Providers whose SDKs read a base URL from the environment; Bedrock and Azure are configured in code. */
export const EXEC_PROVIDERS = ['openai', 'anthropic', 'gemini', 'mistral'] as const
type ExecProvider = (typeof EXEC_PROVIDERS)[number]

/** Where the child's requests go: the proxy, the key (path auth), and the session they all belong to. */
interface ExecTarget {
  proxyUrl: string
  key: string
  session: { id: string; budget: string | null; maxSteps: string | null } | null
  /** Only this provider's variables (plus the generic LLM_BASE_URL); null = every provider above. */
  provider: ExecProvider | null
}

/**
 * Each variable and the path it gets below `{proxy}/{key}[/session/…]/{provider}`. The official SDKs disagree on
 * whether the base URL includes the API version: OpenAI's does (`/v1`), Anthropic's, @google/genai's and Mistral's
 * `serverURL` do not. LiteLLM's `*_API_BASE` follow each provider's own SDK, except Mistral, whose OpenAI-style
 * client appends `/chat/completions` to the base.
 */
const VARIABLES: Record<ExecProvider, ReadonlyArray<readonly [string, string]>> = {
  openai: [
    ['OPENAI_BASE_URL', '/v1'], // openai (Node, Python), Codex CLI before 0.118, LiteLLM
    ['OPENAI_API_BASE', '/v1'], // aider, LiteLLM, LangChain (the pre-1.0 OpenAI SDK name)
  ],
  anthropic: [
    ['ANTHROPIC_BASE_URL', ''], // @anthropic-ai/sdk, anthropic (Python), Claude Code, LiteLLM
    ['ANTHROPIC_API_BASE', ''], // LiteLLM, aider
  ],
  gemini: [
    ['GOOGLE_GEMINI_BASE_URL', ''], // @google/genai, google-genai (Python), Gemini CLI
    ['GEMINI_BASE_URL', ''], // tools that name it so
    ['GEMINI_API_BASE', ''], // LiteLLM, aider
  ],
  mistral: [
    ['MISTRAL_BASE_URL', ''], // the `serverURL` Mistral's own examples read from it; the SDK itself takes serverURL
    ['MISTRAL_API_BASE', '/v1'], // LiteLLM, aider
  ],
}

/** What LLM_BASE_URL (OpenHands, which hands it to LiteLLM as api_base) gets for the one provider chosen. */
const GENERIC_SUFFIX: Record<ExecProvider, string> = { openai: '/v1', anthropic: '', gemini: '', mistral: '/v1' }

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The raw `exec` flags as commander hands them over. */
export interface ExecFlags {
  key?: string
  url?: string
  session?: string
  sessionBudget?: string
  sessionMaxSteps?: string
  provider?: string
}

/** Validates the flags (falling back to LOOPERS_PROXY_KEY / LOOPERS_PROXY_URL); throws a usage error naming the problem. */
export function parseExecFlags(flags: ExecFlags, env: { proxyKey: string | null; proxyUrl: string | null }): ExecTarget {
  const key = flags.key?.trim() || env.proxyKey
  if (key === null || key === undefined) throw usageError('exec needs a proxy key: --key lp-… or LOOPERS_PROXY_KEY')
  if (!isProxyKey(key)) throw usageError('the proxy key must be lp- followed by 43 letters and digits')
  const rawUrl = flags.url?.trim() || env.proxyUrl || 'http://localhost:8080'
  let proxyUrl: string
  try {
    const parsed = new URL(rawUrl)
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError('not http')
    if (parsed.search !== '' || parsed.hash !== '') throw new TypeError('query')
    proxyUrl = parsed.toString().replace(/\/+$/, '')
  } catch {
    throw usageError(`not a proxy URL: '${rawUrl}' (expected http://host:port, as LOOPERS_PROXY_URL)`)
  }
  let provider: ExecProvider | null = null
  if (flags.provider !== undefined) {
    const id = flags.provider.trim().toLowerCase()
    if (!(EXEC_PROVIDERS as readonly string[]).includes(id)) {
      throw usageError(`--provider must be one of ${EXEC_PROVIDERS.join(', ')} (Bedrock and Azure SDKs take their endpoint in code)`)
    }
    provider = id as ExecProvider
  }
  return { proxyUrl, key, provider, session: parseSession(flags) }
}

function parseSession(flags: ExecFlags): ExecTarget['session'] {
  if (flags.session === undefined) {
    if (flags.sessionBudget !== undefined || flags.sessionMaxSteps !== undefined) {
      throw usageError('--session-budget and --session-max-steps need --session ID')
    }
    return null
  }
  const id = flags.session.trim()
  if (!SESSION_ID.test(id)) throw usageError('--session must be 1-128 characters of A-Z a-z 0-9 . _ : -')
  // A URL parser would resolve these as path steps and drop the session from the base URL.
  if (id === '.' || id === '..') throw usageError(`--session cannot be '${id}' (it is a path step in a URL)`)
  let budget: string | null = null
  if (flags.sessionBudget !== undefined) {
    budget = flags.sessionBudget.trim()
    let micros: number
    try {
      micros = parseUsd(budget)
    } catch (error) {
      if (error instanceof AmountError) throw usageError(`--session-budget: ${error.message}`)
      throw error
    }
    if (micros === 0) throw usageError('--session-budget must be above 0')
  }
  let maxSteps: string | null = null
  if (flags.sessionMaxSteps !== undefined) {
    maxSteps = flags.sessionMaxSteps.trim()
    if (!/^\d{1,9}$/.test(maxSteps) || Number(maxSteps) < 1) throw usageError('--session-max-steps must be a positive whole number')
  }
  return { id, budget, maxSteps }
}

/** `{proxy}/{key}[/session/{id}[/budget/{usd}][/max-steps/{n}]]/{provider}`: path auth, with the session in the path (src/proxy/target.ts). */
export function providerBase(target: ExecTarget, provider: ExecProvider): string {
  let base = `${target.proxyUrl}/${target.key}`
  const session = target.session
  if (session !== null) {
    base += `/session/${session.id}`
    if (session.budget !== null) base += `/budget/${session.budget}`
    if (session.maxSteps !== null) base += `/max-steps/${session.maxSteps}`
  }
  return `${base}/${provider}`
}

/** The child's environment: `inherited` (provider keys stay the upstream credentials) with the base-URL variables set on top. */
export function buildExecEnv(target: ExecTarget, inherited: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = { ...inherited }
  const providers = target.provider === null ? EXEC_PROVIDERS : [target.provider]
  for (const provider of providers) {
    for (const [name, suffix] of VARIABLES[provider]) env[name] = providerBase(target, provider) + suffix
  }
  if (target.provider !== null) env.LLM_BASE_URL = providerBase(target, target.provider) + GENERIC_SUFFIX[target.provider]
  return env
}
