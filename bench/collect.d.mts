/** Types of bench/collect.mjs for its tests. */
export function collectGarbage(): number
