/**
 * How a user names a key (CLI argument, admin API path): the full hash, a unique hash prefix of at
 * least MIN_HASH_PREFIX hex digits, or the key's name. Each store finds the candidates; this decides.
 */
import { MIN_HASH_PREFIX, type KeyLookup, type KeyRecord } from './types.js'

/** What to look for: a lower-cased hash prefix (null when `ref` cannot be one) and the name as typed (trimmed). */
export function parseKeyRef(ref: string): { prefix: string | null; name: string } {
  const name = ref.trim()
  const hex = name.toLowerCase()
  const prefix = hex.length >= MIN_HASH_PREFIX && hex.length <= 64 && /^[0-9a-f]+$/.test(hex) ? hex : null
  return { prefix, name }
}

/** One key among the hash and name matches (de-duplicated), else unknown or ambiguous. */
export function pickKey(matches: readonly KeyRecord[]): KeyLookup {
  const unique = [...new Map(matches.map((r) => [r.hash, r])).values()]
  const [only] = unique
  if (unique.length === 1 && only !== undefined) return { ok: true, record: only }
  return { ok: false, reason: unique.length === 0 ? 'unknown' : 'ambiguous', matches: unique.length }
}
