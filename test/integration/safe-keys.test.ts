import { describe, expect, it } from 'vitest'
import { reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { STORE_KINDS } from '../support/stores.js'
import { useBudgetFixture } from '../support/budget-stack.js'

// A key with no limit in any window is refused (budget_not_set) until a limit or `--unlimited` is set.
describe.each(STORE_KINDS)('%s store: safe keys', (kind) => {
  let f: BudgetFixture

  useBudgetFixture(kind, (started) => ({ f } = started))

  it('refuses a key without limits and holds nothing; a limit lets it through on the next reserve', async () => {
    const { record } = await f.admin.createKey('bare', ['openai'])
    expect(record).toMatchObject({ limits: {}, unlimited: false })
    const refused = await f.store.reserve(input(record.hash, 100))
    expect(refused).toEqual({ ok: false, reason: 'budget_not_set' })
    expect(await f.period(record.hash, 'daily')).toEqual({ spent: 0, held: 0 })
    // Session defaults are not window limits: still refused.
    await f.admin.setBudget(record.hash, { sessionBudgetMicros: 5_000 })
    expect(await f.store.reserve(input(record.hash, 100))).toMatchObject({ ok: false, reason: 'budget_not_set' })
    await f.admin.setBudget(record.hash, { limits: { weekly: 1_000 } })
    expect((await f.store.reserve(input(record.hash, 100))).ok).toBe(true)
    // Removing the only limit brings the refusal back.
    await f.admin.setBudget(record.hash, { limits: { weekly: 0 } })
    expect(await f.store.reserve(input(record.hash, 100))).toMatchObject({ ok: false, reason: 'budget_not_set' })
  })

  it('--unlimited lifts the refusal; a limit set later still binds and leaves the mark; clearing it refuses again', async () => {
    const { record } = await f.admin.createKey('open', ['openai'])
    expect((await f.admin.setBudget(record.hash, { unlimited: true }))?.unlimited).toBe(true)
    expect((await f.store.reserve(input(record.hash, 10_000_000))).ok).toBe(true)
    const limited = await f.admin.setBudget(record.hash, { limits: { daily: 10_000_100 } })
    expect(limited).toMatchObject({ unlimited: true, limits: { daily: 10_000_100 } })
    expect(await f.store.reserve(input(record.hash, 200))).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily' })
    await f.admin.setBudget(record.hash, { limits: { daily: 0 }, unlimited: false })
    expect(await f.store.reserve(input(record.hash, 1))).toMatchObject({ ok: false, reason: 'budget_not_set' })
  })

  it('createKey takes the limits of budget set, so one call makes a usable key', async () => {
    const { record } = await f.admin.createKey('ready', ['openai'], { limits: { daily: 500 }, sessionMaxSteps: 3 })
    expect(record).toMatchObject({ limits: { daily: 500 }, sessionMaxSteps: 3, unlimited: false })
    expect(await f.admin.getKey(record.hash)).toEqual(record)
    expect((await f.store.reserve(input(record.hash, 500))).ok).toBe(true)
    expect(await f.store.reserve(input(record.hash, 1))).toMatchObject({ ok: false, reason: 'budget_exceeded' })
    const open = await f.admin.createKey('open', ['openai'], { unlimited: true })
    expect(open.record.unlimited).toBe(true)
    expect((await f.store.reserve(input(open.record.hash, 1))).ok).toBe(true)
  })

  it('the revoked and provider checks still come first', async () => {
    const { record } = await f.admin.createKey('bare', ['anthropic'])
    expect(await f.store.reserve(input(record.hash, 1))).toMatchObject({ reason: 'provider_not_allowed' })
    await f.admin.revokeKey(record.hash)
    expect(await f.store.reserve(input(record.hash, 1, { provider: 'anthropic' }))).toMatchObject({ reason: 'key_revoked' })
    void kind
  })
})
