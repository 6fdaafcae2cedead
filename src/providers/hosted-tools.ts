import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { headerValue } from '../http/headers.js'
import { REFERENCED_CONTEXT_TOKENS } from '../tokens/bound.js'
import { isObject, type Json } from './body.js'
import type { RouteMatch } from './types.js'

/**
 * What a request makes a provider do beyond generating from its body, per provider: hosted tools (whose
 * results are input the body does not carry, and some of which carry a per-call fee) and price tiers.
 * Each reader returns the extra input tokens to reserve, or throws invalid_request for what is not priced.
 */

/** Refusal for a hosted tool that bills a per-call fee the pricing table does not carry yet. */
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

/** OpenAI format (OpenAI, Azure): `service_tier`, hosted tools, stored prompts. */
export function compatReferencedInput(route: RouteMatch, body: Json): number {
  const tier = body.service_tier
  if (tier != null && !(typeof tier === 'string' && STANDARD_SERVICE_TIERS.has(tier))) unpricedTier(`service_tier '${String(tier).slice(0, 32)}'`)
  if (body.web_search_options != null) unpricedTool('web_search_options')
  let extra = 0
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      const type = isObject(tool) && typeof tool.type === 'string' ? tool.type : 'function'
      if (OPENAI_CLIENT_TOOLS.has(type)) continue
      if (!OPENAI_FETCHING_TOOLS.has(type)) unpricedTool(type)
      extra = REFERENCED_CONTEXT_TOKENS
    }
  }
  // A stored prompt template (`prompt: {id}`) is expanded server-side.
  if (route.operation === 'responses' && body.prompt != null) extra = REFERENCED_CONTEXT_TOKENS
  return extra
}

// Anthropic server tools by type prefix: fee-bearing ones are refused, fee-free ones read content.
const ANTHROPIC_FEE_TOOLS = ['web_search_', 'code_execution_']
const ANTHROPIC_FETCHING_TOOLS = ['web_fetch_', 'tool_search_tool_', 'mcp_toolset']

/** Anthropic: the 1M-context beta, server tools, MCP servers and reused containers. */
export function anthropicReferencedInput(body: Json, headers: IncomingHttpHeaders): number {
  const beta = headerValue(headers, 'anthropic-beta')
  if (beta !== null && /context-1m/i.test(beta)) unpricedTier('the 1M-context beta (long-context rates)')
  let extra = body.mcp_servers != null || body.container != null ? REFERENCED_CONTEXT_TOKENS : 0
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      const type = isObject(tool) && typeof tool.type === 'string' ? tool.type : ''
      if (ANTHROPIC_FEE_TOOLS.some((prefix) => type.startsWith(prefix))) unpricedTool(type)
      if (ANTHROPIC_FETCHING_TOOLS.some((prefix) => type.startsWith(prefix))) extra = REFERENCED_CONTEXT_TOKENS
    }
  }
  return extra
}

// Gemini grounding tools billed per grounded prompt or per search query.
const GEMINI_FEE_TOOLS = ['googleSearch', 'google_search', 'googleSearchRetrieval', 'google_search_retrieval', 'googleMaps', 'google_maps', 'enterpriseWebSearch', 'enterprise_web_search']

/** Gemini: grounding with a per-prompt fee is refused (the other built-in tools are bounded by the adapter). */
export function geminiReferencedInput(body: Json): number {
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      if (!isObject(tool)) continue
      for (const name of GEMINI_FEE_TOOLS) if (tool[name] != null) unpricedTool(name)
    }
  }
  return 0
}

/** Bedrock: latency-optimized inference and service tiers other than the default, and system tools. */
export function bedrockReferencedInput(body: Json, headers: IncomingHttpHeaders): number {
  const latency = headerValue(headers, 'x-amzn-bedrock-performanceconfig-latency')
  const performance = isObject(body.performanceConfig) ? body.performanceConfig.latency : undefined
  if ((latency !== null && latency !== 'standard') || (performance != null && performance !== 'standard')) unpricedTier('latency-optimized inference')
  const headerTier = headerValue(headers, 'x-amzn-bedrock-service-tier')
  const tier = isObject(body.serviceTier) ? body.serviceTier.type : body.serviceTier
  if ((headerTier !== null && headerTier !== 'default') || (tier != null && tier !== 'default')) unpricedTier('a Bedrock service tier other than default')
  const tools = isObject(body.toolConfig) ? body.toolConfig.tools : undefined
  if (Array.isArray(tools)) {
    for (const tool of tools) if (isObject(tool) && tool.systemTool != null) unpricedTool('systemTool')
  }
  return 0
}
