/** Types of bench/pile-up.mjs for its tests. */
export const WAIT_SPAN_MS: number
export const WAIT_SAMPLE_MS: number
export const WAIT_FLAG_MS: number
export const GENERATOR_LAG_FLAG_MS: number
export const REDIS_LATENCY_FLAG_MS: number
export type PileUpCause = 'core wait' | 'generator lag' | 'Redis core wait' | 'upstream core wait' | 'Redis latency'
export function parseSchedstat(text: string): { runNs: number; waitNs: number; slices: number } | null
export function longestWaitMs(samples: { at: number; waitNs: number }[], spanMs?: number): number
export const RELATIVE_FLAG: number
export type StallStats = {
  mainWaitMaxMs: number | null
  generatorLateMaxMs: number | null
  redisWaitMaxMs?: number | null
  upstreamWaitMaxMs?: number | null
  redisLatencyMaxMs?: number | null
}
export function pileUpCauses(stats: StallStats, calmest?: Partial<StallStats>): PileUpCause[]
export function trialPileUps(trial: { direct?: StallStats; proxied?: StallStats; floor?: StallStats }): Record<string, PileUpCause[]>
export function watchRun(
  pid: number | null,
  options?: { also?: Record<string, number | null> },
): { stop(): { mainWaitMaxMs: number | null; mainWaitMs: number | null; otherThreadsCpuMs: number | null; gcs: number; gcLongestMs: number; alsoWaitMaxMs: Record<string, number | null> } }
export function gcPausesIn(file: string | null, fromMs: number, toMs: number): { count: number; longestMs: number; marks: { atMs: number; ms: number }[] } | null
export interface RedisCalls {
  call(...args: string[]): Promise<unknown>
}
export type RedisStalls = { latencyMaxMs: number; events: { event: string; maxMs: number }[]; slowest: { usec: number; command: string }[] }
export function watchRedis(redis: RedisCalls): Promise<void>
export function resetRedisStalls(redis: RedisCalls): Promise<void>
export function readRedisStalls(redis: RedisCalls): Promise<RedisStalls>
export function parseRedisStalls(
  latest: unknown[][],
  slow: unknown[][],
): RedisStalls
export function flaggedTrials(trials: Record<string, unknown>[]): { trial: number; runs: { side: string; causes: PileUpCause[] }[] }[]
