/** Types of bench/thread-probe.mjs for its tests. */
export type MainThreadCounts = {
  'main-user-ms': number
  'main-sys-ms': number
  'main-timeslices': number
  'main-voluntary-switches': number
  'main-involuntary-switches': number
}
export function threadGroupsCpuMs(pid: number): Map<string, { group: string; ms: number }>
export function groupDelta(before: Map<string, { group: string; ms: number }>, after: Map<string, { group: string; ms: number }>): Record<string, number>
export function mainThreadCounts(pid: number): MainThreadCounts
export function mainDelta(before: MainThreadCounts, after: MainThreadCounts): MainThreadCounts
export function startPerfStat(pid: number, events: string[]): { stop(): Promise<Record<string, number>> }
export function startPerfRecord(pid: number, file: string): { stop(): Promise<void> }
