/** Types of the parts of bench/report.mjs its tests use. */
export interface Figure {
  scenario: string
  metric: string
  unit: string
  min: number | null
  median: number | null
  max: number | null
  n: number
  floor: number | null
  target: { op: '<=' | '>=' | '=='; limit: number } | null
  status: 'PASS' | 'MISS' | '—'
  note: string
}
export function figures(results: Record<string, unknown>): Figure[]
