/** Types of bench/tail-count.mjs for its tests. */
export type Cause = 'gc' | 'workers' | 'wait' | 'own' | 'gen' | 'redis' | 'fake' | 'lull'
export type Span = { from: number; to: number }
export type Tally = { n: number; none: number; share: Record<Cause, number>; first: Record<Cause, number> }
export const CAUSES: Cause[]
export function causesOf(request: { due: number; ms: number; lateMs: number }, events: Partial<Record<Cause, Span[]>>, lull: boolean): Set<Cause>
export function createTally(): Tally
export function addCauses(tally: Tally, hit: Set<Cause>): void
