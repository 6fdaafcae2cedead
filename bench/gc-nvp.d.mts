/** Types of bench/gc-nvp.mjs for its tests. */
export type NvpFields = Record<string, number | string>
export function parseNvp(line: string): NvpFields | null
export function joinWaitMs(fields: NvpFields): number
export function pauseStats(pauses: number[], longMs?: number): { n: number; p50: number; p99: number; max: number; long: number }
export function medianOf<T>(list: T[], pick: (item: T) => unknown): number
export function carriedOver(scavenges: NvpFields[]): number | null
export function envPairs(text: string): Record<string, string>
