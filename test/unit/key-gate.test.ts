import { describe, expect, it } from 'vitest'
import type { KeyRecord } from '../../src/budget/types.js'
import { loadConfig } from '../../src/config.js'
import { ProxyError, StoreUnavailableError } from '../../src/errors.js'
import { generateKey, hashKey } from '../../src/keys.js'
import { createAdapters } from '../../src/providers/registry.js'
import { createKeyGate } from '../../src/proxy/key-gate.js'
import { parseTarget } from '../../src/proxy/target.js'

const adapters = createAdapters(loadConfig({}))
const URL_OPENAI = '/openai/v1/chat/completions'

function record(key: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  return { hash: hashKey(key), name: 'k', providers: ['openai'], active: true, createdAt: '', limits: {}, sessionBudgetMicros: null, sessionMaxSteps: null, unlimited: false, rpm: null, loopLimit: null, loopWindowSeconds: null, ...overrides }
}

/** A gate over an in-memory key table that counts lookups. */
function gateOver(records: KeyRecord[], options: { maxKeys?: number; ttlMs?: number; now?: () => number; fail?: boolean } = {}) {
  const byHash = new Map(records.map((r) => [r.hash, r]))
  const calls = { lookups: 0 }
  const gate = createKeyGate({
    adapters,
    keys: {
      async getKey(hash) {
        calls.lookups++
        await new Promise((r) => setTimeout(r, 1))
        if (options.fail) throw new StoreUnavailableError('down')
        return byHash.get(hash) ?? null
      },
    },
    ...options,
  })
  return { gate, calls, byHash }
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

async function codeOf(checked: unknown): Promise<string> {
  const error = await Promise.resolve(checked).then(() => null, (e: unknown) => e)
  return error instanceof ProxyError ? error.code : 'passed'
}

describe('key gate', () => {
  it('passes a known key, refuses unknown, revoked and not-allowed keys with their codes', async () => {
    const good = generateKey()
    const revoked = generateKey()
    const anthropicOnly = generateKey()
    const { gate } = gateOver([record(good), record(revoked, { active: false }), record(anthropicOnly, { providers: ['anthropic'] })])
    expect(await gate.check(URL_OPENAI, bearer(good))).toEqual({ keyHash: hashKey(good), target: parseTarget(URL_OPENAI) })
    expect(await codeOf(gate.check(URL_OPENAI, bearer(generateKey())))).toBe('invalid_key')
    expect(await codeOf(gate.check(URL_OPENAI, bearer(revoked)))).toBe('key_revoked')
    expect(await codeOf(gate.check(URL_OPENAI, bearer(anthropicOnly)))).toBe('provider_not_allowed')
    expect(await codeOf(gate.check(URL_OPENAI, {}))).toBe('invalid_key')
    expect(await codeOf(gate.check(URL_OPENAI, bearer('sk-not-ours')))).toBe('invalid_key')
    expect(await gate.check('/health', {})).toBeNull()
  })

  it("refuses a malformed key right after a well-formed one, whatever the last key was", async () => {
    const good = generateKey()
    const { gate } = gateOver([record(good)])
    for (const bad of [`${good.slice(0, -1)}-`, `${good}x`, good.slice(0, -1), ` ${good.slice(1)}`]) {
      expect(await gate.check(URL_OPENAI, bearer(good))).toEqual({ keyHash: hashKey(good), target: parseTarget(URL_OPENAI) })
      expect(await codeOf(gate.check(URL_OPENAI, bearer(bad)))).toBe('invalid_key')
      expect(await codeOf(gate.check(URL_OPENAI, bearer(bad)))).toBe('invalid_key')
    }
  })

  it("gives each request its own key's hash when keys alternate, a run of one key or a refusal between them", async () => {
    const a = generateKey()
    const b = generateKey()
    const { gate } = gateOver([record(a), record(b)])
    const hashOf = async (key: string) => ((await gate.check(URL_OPENAI, bearer(key))) as { keyHash: string }).keyHash
    for (const key of [a, b, b, a, a, b]) expect(await hashOf(key)).toBe(hashKey(key))
    expect(await codeOf(gate.check(URL_OPENAI, bearer('lp-short')))).toBe('invalid_key')
    expect(await hashOf(b)).toBe(hashKey(b))
    // The same key's text in a new string (as each request's header is) still gives its hash.
    expect(await hashOf(`${b.slice(0, 10)}${b.slice(10)}`)).toBe(hashKey(b))
  })

  it('looks a valid key up once, then again after forget or when its time is up', async () => {
    let clock = 0
    const key = generateKey()
    const { gate, calls } = gateOver([record(key)], { ttlMs: 1_000, now: () => clock })
    await gate.check(URL_OPENAI, bearer(key))
    await gate.check(URL_OPENAI, bearer(key))
    expect(calls.lookups).toBe(1)
    gate.forget(hashKey(key))
    await gate.check(URL_OPENAI, bearer(key))
    expect(calls.lookups).toBe(2)
    clock += 1_001
    await gate.check(URL_OPENAI, bearer(key))
    expect(calls.lookups).toBe(3)
  })

  it('passes a key it saw valid lately at once, without a promise; a refusal is always a rejected promise', async () => {
    const key = generateKey()
    const { gate } = gateOver([record(key)])
    expect(gate.check(URL_OPENAI, bearer(key))).toBeInstanceOf(Promise)
    await gate.check(URL_OPENAI, bearer(key))
    expect(gate.check(URL_OPENAI, bearer(key))).toEqual({ keyHash: hashKey(key), target: parseTarget(URL_OPENAI) })
    const refused = gate.check(URL_OPENAI, {})
    expect(refused).toBeInstanceOf(Promise)
    expect(await codeOf(refused)).toBe('invalid_key')
  })

  it('remembers at most maxKeys keys, dropping the oldest', async () => {
    const keys = [generateKey(), generateKey(), generateKey()]
    const { gate, calls } = gateOver(keys.map((k) => record(k)), { maxKeys: 2 })
    for (const key of keys) await gate.check(URL_OPENAI, bearer(key))
    expect(calls.lookups).toBe(3)
    await gate.check(URL_OPENAI, bearer(keys[2]!))
    await gate.check(URL_OPENAI, bearer(keys[1]!))
    expect(calls.lookups).toBe(3)
    await gate.check(URL_OPENAI, bearer(keys[0]!))
    expect(calls.lookups).toBe(4)
  })

  it('concurrent first requests of one key share one lookup; a store fault fails closed', async () => {
    const key = generateKey()
    const { gate, calls } = gateOver([record(key)])
    await Promise.all(Array.from({ length: 20 }, () => gate.check(URL_OPENAI, bearer(key))))
    expect(calls.lookups).toBe(1)
    const down = gateOver([record(key)], { fail: true })
    expect(await codeOf(down.gate.check(URL_OPENAI, bearer(key)))).toBe('budget_unavailable')
  })

  it('reads the key where each provider SDK sends it, and from the path', async () => {
    const key = generateKey()
    const { gate } = gateOver([record(key, { providers: ['openai', 'anthropic', 'gemini', 'azure'] })])
    expect(await gate.check(`/${key}/openai/v1/chat/completions`, {})).not.toBeNull()
    expect(await gate.check('/anthropic/v1/messages', { 'x-api-key': key })).not.toBeNull()
    expect(await gate.check(`/gemini/v1beta/models/g:generateContent?key=${key}`, {})).not.toBeNull()
    expect(await gate.check('/azure/openai/deployments/d/chat/completions', { 'api-key': key })).not.toBeNull()
    expect(gate.keyOf(URL_OPENAI, bearer(key))).toEqual({ keyHash: hashKey(key) })
    expect(gate.keyOf(URL_OPENAI, {})).toBeNull()
  })
})
