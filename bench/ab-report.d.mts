/** Types of bench/ab-report.mjs for its tests. */
export type AbTrial = { us: number | null; rps: number; p50: number | null; p99: number | null; errors: number; served: number; groups?: Record<string, number> | null; counts?: Record<string, number> | null }
export function median(xs: (number | null)[]): number | null
export function range(xs: (number | null)[], digits: number, unit?: string): string
export function abReportLines(per: Record<string, AbTrial[]>): string[]
