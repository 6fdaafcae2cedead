/** Types of bench/jit-positions.mjs for its tests. */
export type ListedFunction = { script: string; name: string; inlined: boolean; start: number; end: number }
export type ListedCode = { id: string | null; name: string | null; kind: string | null; start: number; size: number; positions: { pc: number; position: number }[]; functions: ListedFunction[] }
export type PositionRow = { script: string | null; name: string | null; start: number; position: number; ir: number }
export function readListing(text: string, fn: string): ListedCode[]
export function readInstructionCosts(text: string): Map<number, number>
export function joinPositions(codes: ListedCode[], costs: Map<number, number>): { rows: PositionRow[]; perCode: { id: string | null; kind: string | null; size: number; ir: number }[] }
export function lineOf(text: string, offset: number): { line: number; column: number }
export function placeOf(row: PositionRow, read: (script: string) => string | null): string
export function summarize(rows: PositionRow[], read: (script: string) => string | null, by?: 'line' | 'position'): { place: string; name: string | null; ir: number; text: string }[]
