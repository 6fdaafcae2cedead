import { describe, expect, it } from 'vitest'
import { CliError } from '../../src/cli/errors.js'
import { buildExecEnv, parseExecFlags, providerBase, type ExecFlags } from '../../src/cli/exec-env.js'
import { readSession } from '../../src/proxy/control-headers.js'
import { parseTarget } from '../../src/proxy/target.js'

const KEY = `lp-${'A1b2C3d4E5'.repeat(4)}xyz`
const NO_ENV = { proxyKey: null, proxyUrl: null }

describe('loopers exec: the child environment', () => {
  it('points every SDK variable at Loopers in the base-URL shape that SDK expects, keeping the rest', () => {
    const target = parseExecFlags({ key: KEY, url: 'http://proxy:8080/' }, NO_ENV)
    const env = buildExecEnv(target, { OPENAI_API_KEY: 'sk-real', PATH: '/bin' })
    const base = `http://proxy:8080/${KEY}`
    expect(env).toEqual({
      OPENAI_API_KEY: 'sk-real',
      PATH: '/bin',
      OPENAI_BASE_URL: `${base}/openai/v1`,
      OPENAI_API_BASE: `${base}/openai/v1`,
      ANTHROPIC_BASE_URL: `${base}/anthropic`,
      ANTHROPIC_API_BASE: `${base}/anthropic`,
      GOOGLE_GEMINI_BASE_URL: `${base}/gemini`,
      GEMINI_BASE_URL: `${base}/gemini`,
      GEMINI_API_BASE: `${base}/gemini`,
      MISTRAL_BASE_URL: `${base}/mistral`,
      MISTRAL_API_BASE: `${base}/mistral/v1`,
    })
  })

  it('--provider sets only that provider and the generic LLM_BASE_URL', () => {
    const env = buildExecEnv(parseExecFlags({ key: KEY, provider: 'Anthropic' }, NO_ENV), {})
    expect(Object.keys(env).sort()).toEqual(['ANTHROPIC_API_BASE', 'ANTHROPIC_BASE_URL', 'LLM_BASE_URL'])
    expect(env.LLM_BASE_URL).toBe(`http://localhost:8080/${KEY}/anthropic`)
  })

  it('puts the session in the path, and the proxy reads it back exactly as the headers would give it', () => {
    const target = parseExecFlags({ key: KEY, session: 'run-7:a', sessionBudget: '2.5', sessionMaxSteps: '40' }, { proxyKey: null, proxyUrl: 'https://lp.example' })
    const base = providerBase(target, 'openai')
    expect(base).toBe(`https://lp.example/${KEY}/session/run-7:a/budget/2.5/max-steps/40/openai`)
    const parsed = parseTarget(`${new URL(base).pathname}/v1/chat/completions?x=1`)
    expect(parsed).toEqual({ pathKey: KEY, pathSession: { id: 'run-7:a', budget: '2.5', maxSteps: '40' }, provider: 'openai', path: '/v1/chat/completions', query: 'x=1' })
    expect(readSession({}, parsed!.pathSession)).toEqual({ id: 'run-7:a', budgetMicros: 2_500_000, maxSteps: 40 })
  })

  it.each<[string, ExecFlags, { proxyKey: string | null; proxyUrl: string | null }]>([
    ['no key', {}, NO_ENV],
    ['not a proxy key', { key: 'sk-abc' }, NO_ENV],
    ['bad url', { key: KEY, url: 'ftp://x' }, NO_ENV],
    ['unknown provider', { key: KEY, provider: 'bedrock' }, NO_ENV],
    ['budget without session', { key: KEY, sessionBudget: '1' }, NO_ENV],
    ['bad session id', { key: KEY, session: 'a b' }, NO_ENV],
    ['a session id a URL would resolve away', { key: KEY, session: '..' }, NO_ENV],
    ['zero budget', { key: KEY, session: 's', sessionBudget: '0' }, NO_ENV],
    ['bad steps', { key: KEY, session: 's', sessionMaxSteps: '1.5' }, NO_ENV],
  ])('refuses %s with a usage error', (_what, flags, env) => {
    expect(() => parseExecFlags(flags, env)).toThrow(CliError)
  })

  it('takes LOOPERS_PROXY_KEY and LOOPERS_PROXY_URL when the flags are absent; flags win', () => {
    expect(parseExecFlags({}, { proxyKey: KEY, proxyUrl: 'http://h:1' }).proxyUrl).toBe('http://h:1')
    expect(parseExecFlags({ url: 'http://flag:2' }, { proxyKey: KEY, proxyUrl: 'http://h:1' }).proxyUrl).toBe('http://flag:2')
  })
})

describe('a session in the path (parseTarget + readSession)', () => {
  it('works without path auth too, and refuses a path and a header that disagree', () => {
    const parsed = parseTarget('/session/abc/anthropic/v1/messages')
    expect(parsed?.pathKey).toBeNull()
    expect(parsed?.provider).toBe('anthropic')
    expect(readSession({ 'x-loopers-session-id': 'abc' }, parsed!.pathSession)?.id).toBe('abc')
    expect(() => readSession({ 'x-loopers-session-id': 'other' }, parsed!.pathSession)).toThrow(/differ/)
    expect(() => readSession({}, parseTarget('/session//openai/v1/chat/completions')!.pathSession)).toThrow()
    expect(() => readSession({}, parseTarget('/session/s/budget/abc/openai/v1/chat/completions')!.pathSession)).toThrow()
    expect(parseTarget('/session/s/notaprovider/v1')).toBeNull()
  })
})
