/** Types of bench/interleave.mjs for its tests. */
export type Slice = { side: string; ok: number; cpuMs: Record<string, number> }
export type SideFigures = { served: number; slices: number; cpuMs: number; usPerRequest: number | null; ownSliceShare: number | null }
export function sliceOrder(names: string[], slices: number): string[]
export function summarizeSlices(
  slices: Slice[],
  between?: Record<string, number>,
  a?: string,
  b?: string,
): { sides: Record<string, SideFigures>; ratio: number | null; pairs: (number | null)[] }
export function interleave(options: {
  targets: Record<string, { url: string; pid: number; request: { path: string; headers: Record<string, string>; body: string }; pool: unknown }>
  rate: number
  sliceMs: number
  slices: number
  a?: string
  b?: string
}): Promise<{ rate: number; sliceMs: number; slicesPerSide: number; sides: Record<string, SideFigures>; ratio: number | null; pairs: (number | null)[]; slices: (Slice & { errors: number; p99: number | null })[] }>
