import type { KeyAdmin, KeyRecord } from '../budget/types.js'
import { MIN_HASH_PREFIX } from '../budget/types.js'
import { CliError, unknownKey } from './errors.js'

/**
 * The key a CLI argument names (full hash, unique prefix of at least 8 hex digits, or name); an unknown
 * or ambiguous one is a CliError (exit 1) with one line that says which.
 */
export async function resolveRef(admin: KeyAdmin, ref: string): Promise<KeyRecord> {
  const found = await admin.resolveKey(ref)
  if (found.ok) return found.record
  const typed = ref.trim()
  if (found.reason === 'ambiguous') {
    throw new CliError(`ambiguous key '${typed}': ${found.matches} keys match; give more of the hash (\`loopers keys list\`)`)
  }
  if (/^[0-9a-fA-F]{64}$/.test(typed)) throw unknownKey(typed.toLowerCase())
  throw new CliError(
    `unknown key '${typed}': no key has this name or hash prefix (a prefix needs at least ${MIN_HASH_PREFIX} hex digits)`,
  )
}
