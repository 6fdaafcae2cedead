/** Types of bench/interleave.mjs for its tests. */
export type Slice = { side: string; ok: number; cpuMs: Record<string, number>; tailCpuMs?: Record<string, number> }
export type SideFigures = { served: number; slices: number; cpuMs: number; usPerRequest: number | null; ownSliceShare: number | null; countedUsPerRequest?: number | null; steadyUsPerRequest?: number | null }
export function sliceOrder(names: string[], slices: number, order?: 'mirrored' | 'alternate'): string[]
export function summarizeSlices(
  slices: Slice[],
  between?: Record<string, number>,
  a?: string,
  b?: string,
  rate?: number | null,
): { sides: Record<string, SideFigures>; ratio: number | null; pairs: (number | null)[]; countedRatio?: number; steadyRatio?: number }
export function countedCpuMs(slices: Slice[]): Record<string, number> | null
export const TAIL_MS: number
export function interleave(options: {
  targets: Record<string, { url: string; pid: number; request: { path: string; headers: Record<string, string>; body: string }; pool: unknown }>
  rate: number
  sliceMs: number
  slices: number
  a?: string
  b?: string
  steadyFromMs?: number | null
  order?: 'mirrored' | 'alternate'
  leadIn?: number
}): Promise<{ rate: number; sliceMs: number; slicesPerSide: number; order: 'mirrored' | 'alternate'; sides: Record<string, SideFigures>; ratio: number | null; countedRatio?: number; steadyRatio?: number; pairs: (number | null)[]; slices: (Slice & { errors: number; p99: number | null })[] }>
