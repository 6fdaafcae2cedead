import { describe, expect, it } from 'vitest'
import { countExactInput, deferInputCount, type ExactCountDeps } from '../../src/proxy/exact-count.js'
import type { ProviderAdapter } from '../../src/providers/types.js'

// deferInputCount runs between a request's reservation and its forwarding, outside the settle-once block:
// whatever the adapter does, it must return (a throw there would leave the hold unsettled).
const deps = { counter: {}, upstream: {} } as unknown as ExactCountDeps
const input = (exactInput: ProviderAdapter['exactInput']) => ({
  adapter: { exactInput } as unknown as ProviderAdapter,
  route: { operation: 'chat', pathModel: null, pathStream: null },
  path: '/v1/chat/completions',
  headers: {},
  credential: { kind: 'bearer', token: 't' },
  body: {},
  source: { member: () => undefined, edited: async () => Buffer.alloc(0) },
  scan: { mediaParts: 0, fetchesContent: false },
  model: 'm',
  tokensPerMedia: 0,
}) as unknown as Parameters<typeof deferInputCount>[1]

describe('a stream count decided at admission', () => {
  it('answers "cannot count" when the adapter throws deciding it, instead of throwing', async () => {
    const later = deferInputCount(deps, input(() => { throw new TypeError('unexpected body shape') }))
    later.forwarded(Buffer.from('{}'))
    await expect(later.count(100)).resolves.toBeNull()
  })

  it('answers "cannot count" when the adapter has no way to count', async () => {
    const later = deferInputCount(deps, input(() => null))
    later.forwarded(Buffer.from('{}'))
    await expect(later.count(100)).resolves.toBeNull()
  })

  it('counted at once (admission), answers "cannot count" too when the adapter throws: the caller keeps the bound', async () => {
    const thrown = input(() => { throw new TypeError('unexpected body shape') })
    await expect(countExactInput(deps, { ...thrown, raw: Buffer.from('{}'), limit: 100 })).resolves.toBeNull()
  })
})
