/** Types of bench/pile-up.mjs for its tests. */
export const WAIT_SPAN_MS: number
export const WAIT_SAMPLE_MS: number
export const WAIT_FLAG_MS: number
export const GENERATOR_LAG_FLAG_MS: number
export type PileUpCause = 'core wait' | 'generator lag'
export function parseSchedstat(text: string): { runNs: number; waitNs: number; slices: number } | null
export function longestWaitMs(samples: { at: number; waitNs: number }[], spanMs?: number): number
export function pileUpCauses(stats: { mainWaitMaxMs: number | null; generatorLateMaxMs: number | null }): PileUpCause[]
export function watchRun(pid: number | null): { stop(): { mainWaitMaxMs: number | null; mainWaitMs: number | null; otherThreadsCpuMs: number | null; gcs: number; gcLongestMs: number } }
export function flaggedTrials(trials: Record<string, unknown>[]): { trial: number; runs: { side: string; causes: PileUpCause[] }[] }[]
