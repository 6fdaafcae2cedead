/** Types of the parts of bench/loop-guard.mjs its tests use. */
export type GuardSlice = { trial: number; key: 'on' | 'off'; ok: number; cpuMs: number[] }
export const RATE: number
export const SLICE: number
export function sliceOrder(trial: number, perKey: number): ('on' | 'off')[]
export function summarizeGuard(slices: GuardSlice[]): {
  cpu_us_per_request: { guard_on: number; guard_off: number }
  overhead_pct: number
  trial_overhead_pct: number[]
  proxy_overhead_pct?: number
  redis_cpu_us_per_request?: { guard_on: number; guard_off: number }
  redis_overhead_pct?: number
  redis_guard_us_per_request?: number
  redis_guard_pct_of_total?: number
}
export function body(i: number, scopes: 'one' | 'many' | 'growing'): string
