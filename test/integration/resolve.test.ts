import { describe, expect, it } from 'vitest'
import { type BudgetFixture } from '../support/budget-fixture.js'
import { plantKey } from '../support/plant-key.js'
import { STORE_KINDS, type TestStore } from '../support/stores.js'
import { useBudgetFixture } from '../support/budget-stack.js'

describe.each(STORE_KINDS)('%s store: resolveKey', (kind) => {
  let server: TestStore
  let f: BudgetFixture

  useBudgetFixture(kind, (started) => ({ server, f } = started))

  it('finds a key by full hash (any case), by a unique prefix of 8+ hex digits and by name', async () => {
    const { record } = await f.admin.createKey('resolve-me', ['openai'])
    for (const ref of [record.hash, record.hash.toUpperCase(), record.hash.slice(0, 8), record.hash.slice(0, 20), 'resolve-me', '  resolve-me ']) {
      expect(await f.admin.resolveKey(ref), ref).toEqual({ ok: true, record })
    }
  })

  it('refuses a prefix shorter than 8 digits, an unknown ref, and a name or prefix that names two keys', async () => {
    const { record } = await f.admin.createKey('short', ['openai'])
    expect(await f.admin.resolveKey(record.hash.slice(0, 7))).toEqual({ ok: false, reason: 'unknown', matches: 0 })
    expect(await f.admin.resolveKey('no-such-key')).toEqual({ ok: false, reason: 'unknown', matches: 0 })
    expect(await f.admin.resolveKey('f'.repeat(64))).toEqual({ ok: false, reason: 'unknown', matches: 0 })

    await f.admin.createKey('twin', ['openai'])
    await f.admin.createKey('twin', ['anthropic'])
    expect(await f.admin.resolveKey('twin')).toEqual({ ok: false, reason: 'ambiguous', matches: 2 })

    await plantKey(server, `abcdef12${'0'.repeat(56)}`, 'planted-a')
    await plantKey(server, `abcdef12${'1'.repeat(56)}`, 'planted-b')
    expect(await f.admin.resolveKey('abcdef12')).toEqual({ ok: false, reason: 'ambiguous', matches: 2 })
    const longer = await f.admin.resolveKey('abcdef121')
    expect(longer.ok && longer.record.name).toBe('planted-b')
  })
})
