/** Types of bench/ab-report.mjs for its tests. */
export type AbTrial = { us: number | null; rps: number; p50: number | null; p99: number | null; errors: number; served: number; groups?: Record<string, number> | null; counts?: Record<string, number> | null }
export type LoadRun = { ok: number; non2xx: number; transportErrors: number; elapsedMs: number; latencies: number[] }
export function median(xs: (number | null)[]): number | null
export function range(xs: (number | null)[], digits: number, unit?: string): string
export function ratioMedian(xs: (number | null)[]): number | null
export function ratioRange(xs: (number | null)[], digits: number): string
export function mergeRuns(runs: LoadRun[]): {
  ok: number
  non2xx: number
  transportErrors: number
  achievedRate: number
  elapsedMs: number
  latencyMs: { count: number; p50: number | null; p90: number | null; p99: number | null; max: number | null; mean: number | null }
}
export function abReportLines(per: Record<string, AbTrial[]>): string[]
