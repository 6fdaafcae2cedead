import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { headerValue } from '../http/headers.js'
import { elementsOf } from '../http/json-elements.js'
import { REFERENCED_CONTEXT_TOKENS } from '../tokens/bound.js'
import { isObject, type Json } from './body.js'
import type { ReferencedInput, RouteMatch } from './types.js'

/**
 * What a request makes a provider do beyond generating from its body, per provider: hosted tools (whose
 * results are input the body does not carry, and some of which carry a per-call fee) and price tiers.
 * Each reader returns the extra input tokens to reserve and the paid tool calls the request allows, or
 * throws invalid_request for what cannot be priced. Fees per call live in the pricing table (`tool_fees`).
 * Tools are read through elementsOf: of a lazily read body, each tool's few members from its bytes, unparsed.
 */

const NONE: ReferencedInput = { tokens: 0, toolCalls: {} }

/** The positive integer bound a request sets on a paid tool's calls; invalid_request when it sets none. */
function callBound(value: unknown, tool: string, field: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= 1000) return value
  throw invalidRequest(`the hosted tool '${tool.slice(0, 64)}' is billed per call: set '${field}' (1-1000) so Loopers can reserve its fees`)
}

/** Refusal for a hosted tool billed in a way Loopers does not price (per container, per image, per grounded prompt). */
function unpricedTool(name: string): never {
  throw invalidRequest(`the hosted tool '${name.slice(0, 64)}' bills a per-call fee Loopers does not price yet; remove it or call the tool from the client`)
}

/** Refusal for a price tier the pricing table does not carry. */
function unpricedTier(what: string): never {
  throw invalidRequest(`${what} is billed above standard rates, which Loopers does not price yet; send the request at the standard tier`)
}

// OpenAI-format `service_tier` values billed at standard rates (`auto` and `default` run on the project's standard tier).
const STANDARD_SERVICE_TIERS = new Set(['auto', 'default'])
// Responses tools the client runs itself: their calls and results travel in request bodies.
const OPENAI_CLIENT_TOOLS = new Set(['function', 'custom', 'computer_use_preview', 'computer_use', 'local_shell', 'shell', 'apply_patch'])
// Hosted tools without a per-call fee whose results the provider feeds back as input.
const OPENAI_FETCHING_TOOLS = new Set(['mcp'])
// Hosted tools billed per call (`tool_fees`); Responses' `max_tool_calls` bounds their calls.
const OPENAI_PAID_TOOLS = /^(?:web_search(?:_preview)?(?:_\d{4}_\d{2}_\d{2})?|file_search)$/

/** OpenAI format (OpenAI, Azure): `service_tier`, hosted tools, stored prompts. */
export function compatReferencedInput(route: RouteMatch, body: Json): ReferencedInput {
  const tier = body.service_tier
  if (tier != null && !(typeof tier === 'string' && STANDARD_SERVICE_TIERS.has(tier))) unpricedTier(`service_tier '${String(tier).slice(0, 32)}'`)
  if (body.web_search_options != null) unpricedTool('web_search_options')
  // A stored prompt template (`prompt: {id}`) is expanded server-side.
  const storedPrompt = route.operation === 'responses' && body.prompt != null
  const tools = elementsOf(body, 'tools')
  // Most requests name no tool and no stored prompt: nothing to add, and nothing made.
  if (tools === null && !storedPrompt) return NONE
  let tokens = 0
  const toolCalls: Record<string, number> = {}
  if (tools !== null) {
    for (let i = 0; i < tools.length; i++) {
      const declared = tools.member(i, 'type')
      const type = typeof declared === 'string' ? declared : 'function'
      if (OPENAI_CLIENT_TOOLS.has(type)) continue
      if (route.operation === 'responses' && OPENAI_PAID_TOOLS.test(type)) {
        toolCalls[type] = callBound(body.max_tool_calls, type, 'max_tool_calls')
      } else if (!OPENAI_FETCHING_TOOLS.has(type)) {
        unpricedTool(type)
      }
      tokens = REFERENCED_CONTEXT_TOKENS
    }
  }
  if (storedPrompt) tokens = REFERENCED_CONTEXT_TOKENS
  return { tokens, toolCalls }
}

// Anthropic server tools by type prefix: web search is billed per search (bounded by `max_uses`), code
// execution per container-hour (not priced), the rest read content at token rates.
const ANTHROPIC_UNPRICED_TOOLS = ['code_execution_']
const ANTHROPIC_FETCHING_TOOLS = ['web_fetch_', 'tool_search_tool_', 'mcp_toolset']

/** Anthropic: the 1M-context beta, server tools, MCP servers and reused containers. */
export function anthropicReferencedInput(body: Json, headers: IncomingHttpHeaders): ReferencedInput {
  const beta = headerValue(headers, 'anthropic-beta')
  if (beta !== null && /context-1m/i.test(beta)) unpricedTier('the 1M-context beta (long-context rates)')
  let tokens = body.mcp_servers != null || body.container != null ? REFERENCED_CONTEXT_TOKENS : 0
  const toolCalls: Record<string, number> = {}
  const tools = elementsOf(body, 'tools')
  if (tools !== null) {
    for (let i = 0; i < tools.length; i++) {
      const declared = tools.member(i, 'type')
      const type = typeof declared === 'string' ? declared : ''
      if (ANTHROPIC_UNPRICED_TOOLS.some((prefix) => type.startsWith(prefix))) unpricedTool(type)
      if (type.startsWith('web_search_')) {
        toolCalls.web_search = (toolCalls.web_search ?? 0) + callBound(tools.member(i, 'max_uses'), type, 'max_uses')
        tokens = REFERENCED_CONTEXT_TOKENS
      }
      if (ANTHROPIC_FETCHING_TOOLS.some((prefix) => type.startsWith(prefix))) tokens = REFERENCED_CONTEXT_TOKENS
    }
  }
  return { tokens, toolCalls }
}

// Gemini grounding tools billed per grounded prompt or per search query.
const GEMINI_FEE_TOOLS = ['googleSearch', 'google_search', 'googleSearchRetrieval', 'google_search_retrieval', 'googleMaps', 'google_maps', 'enterpriseWebSearch', 'enterprise_web_search']

/** Gemini: grounding with a per-prompt fee is refused (the other built-in tools are bounded by the adapter). */
export function geminiReferencedInput(body: Json): ReferencedInput {
  const tools = elementsOf(body, 'tools')
  if (tools !== null) {
    for (let i = 0; i < tools.length; i++) {
      const fee = tools.firstPresent(i, GEMINI_FEE_TOOLS)
      if (fee !== null) unpricedTool(fee)
    }
  }
  return NONE
}

const SYSTEM_TOOL = ['systemTool']

/** Bedrock: latency-optimized inference and service tiers other than the default, and system tools. */
export function bedrockReferencedInput(body: Json, headers: IncomingHttpHeaders): ReferencedInput {
  const latency = headerValue(headers, 'x-amzn-bedrock-performanceconfig-latency')
  const performance = isObject(body.performanceConfig) ? body.performanceConfig.latency : undefined
  if ((latency !== null && latency !== 'standard') || (performance != null && performance !== 'standard')) unpricedTier('latency-optimized inference')
  const headerTier = headerValue(headers, 'x-amzn-bedrock-service-tier')
  const tier = isObject(body.serviceTier) ? body.serviceTier.type : body.serviceTier
  if ((headerTier !== null && headerTier !== 'default') || (tier != null && tier !== 'default')) unpricedTier('a Bedrock service tier other than default')
  const tools = elementsOf(body, 'toolConfig', 'tools')
  if (tools !== null) {
    for (let i = 0; i < tools.length; i++) if (tools.firstPresent(i, SYSTEM_TOOL) !== null) unpricedTool('systemTool')
  }
  return NONE
}
