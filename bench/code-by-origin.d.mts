/** Types of bench/code-by-origin.mjs for its tests. */
export type PerfMapEntry = { start: number; end: number; name: string }
export type FunctionCode = { ir: number; lines: Set<number> }
export type GroupCode = { ir: number; lines: number }
export function readPerfMap(text: string): PerfMapEntry[]
export function nameAt(entries: PerfMapEntry[], address: number): string | null
export function readDump(text: string, entries: PerfMapEntry[]): Map<string, FunctionCode>
export function originOf(key: string): string
export function functionOf(key: string): string
export function sumBy(fns: Map<string, FunctionCode>, group: (key: string) => string): Map<string, GroupCode>
export function diffRows(proxy: Map<string, GroupCode>, floor: Map<string, GroupCode>): { name: string; proxy: GroupCode; floor: GroupCode }[]
