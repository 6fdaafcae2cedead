/** Types of bench/agent-body.mjs for the tests that read its bodies. */
export function agentBody(options?: { bytes?: number; step?: number; seed?: number; shape?: 'chat' | 'anthropic' }): string
