/**
 * The store-level stack an integration suite runs on: a budget store of one kind and a budget fixture on it
 * (hand-driven clock, store, key admin), started before the suite's tests and stopped after them.
 */
import { afterAll, beforeAll } from 'vitest'
import { createBudgetFixture, type BudgetFixture } from './budget-fixture.js'
import { startTestStore, type StoreKind, type TestStore } from './stores.js'

export interface BudgetStack {
  server: TestStore
  f: BudgetFixture
}

/** Registers the hooks; `started` receives the store and its fixture once `beforeAll` has run. Call inside a `describe`. */
export function useBudgetFixture(kind: StoreKind, started: (stack: BudgetStack) => unknown): void {
  const stack: Partial<BudgetStack> = {}
  beforeAll(async () => {
    stack.server = await startTestStore(kind)
    stack.f = await createBudgetFixture(stack.server)
    started({ server: stack.server, f: stack.f })
  })
  afterAll(async () => {
    await stack.f?.close()
    await stack.server?.stop()
  })
}
