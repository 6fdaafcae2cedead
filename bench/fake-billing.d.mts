export type Family = 'openai' | 'claude' | 'mistral' | 'gemini'
export interface Delta {
  readonly text: string
  readonly tokens: number
}
export const ANSWER_TEXT: string
export function familyOf(model: unknown): Family
export function billedTokens(text: string, family?: Family, model?: string): number
export function answerDeltas(family?: Family, model?: string): readonly Delta[]
export function answerChunks(n: number, family?: Family, model?: string): { deltas: Delta[]; tokens: number; text: string }
export function warmBilling(): void
