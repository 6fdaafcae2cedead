import type { BudgetChange, KeyAdmin, KeyRecord } from '../budget/types.js'
import { PROVIDER_IDS, isProviderId, type ProviderId } from '../providers/types.js'
import { unknownKey, usageError } from './errors.js'
import { formatStoredTime, renderTable } from './format.js'
import { resolveRef } from './key-ref.js'

/** `loopers keys …`: each command takes a KeyAdmin and returns the text to print on stdout. */

/**
 * Collects `--provider` values: comma-separated, repeatable, case-insensitive, de-duplicated in order.
 * Throws a usage error naming the first unknown id.
 */
export function parseProviders(values: readonly string[]): ProviderId[] {
  const providers: ProviderId[] = []
  for (const raw of values.flatMap((v) => v.split(','))) {
    const id = raw.trim().toLowerCase()
    if (id === '') continue
    if (!isProviderId(id)) throw usageError(`unknown provider '${raw.trim()}' (expected one of ${PROVIDER_IDS.join(', ')})`)
    if (!providers.includes(id)) providers.push(id)
  }
  if (providers.length === 0) throw usageError(`--provider needs at least one of ${PROVIDER_IDS.join(', ')}`)
  return providers
}

/** Validates a key name: trimmed, non-empty, one line. Returns the trimmed name or throws a usage error. */
export function parseName(value: string): string {
  const name = value.trim()
  if (name === '') throw usageError('--name must not be empty')
  if (/[\r\n]/.test(name)) throw usageError('--name must be a single line')
  return name
}

/** The public JSON shape of a key record (CONTRACT §3 `keys list`). */
export function keyJson(record: KeyRecord): { hash: string; name: string; providers: ProviderId[]; active: boolean; created_at: string } {
  return {
    hash: record.hash,
    name: record.name,
    providers: [...record.providers],
    active: record.active,
    created_at: record.createdAt,
  }
}

/** How `keys create` prints the new key: prose, one JSON object, or shell lines (`LOOPERS_KEY=…`, `LOOPERS_HASH=…`). */
type CreateFormat = 'human' | 'json' | 'env'

/**
 * `keys create`: stores a new key with its first limits and returns its one-time announcement. With
 * `env` the result is the shell lines, and `announce` gets the prose (the CLI prints it on stderr).
 */
export async function createKey(
  admin: KeyAdmin,
  name: string,
  providers: ProviderId[],
  budget: BudgetChange,
  format: CreateFormat,
  announce: (text: string) => void = () => undefined,
): Promise<string> {
  const { key, record } = await admin.createKey(name, providers, budget)
  if (format === 'json') return JSON.stringify({ key, ...keyJson(record) })
  const prose = announcement(key, record)
  if (format === 'human') return prose
  announce(prose)
  return [`LOOPERS_KEY=${key}`, `LOOPERS_HASH=${record.hash}`].join('\n')
}

function announcement(key: string, record: KeyRecord): string {
  const limited = record.unlimited || Object.keys(record.limits).length > 0
  return [
    `Created key "${record.name}".`,
    '',
    `  ${key}`,
    '',
    'Store it now, it is not kept: Loopers saves only its hash and cannot show this key again.',
    '',
    renderFields([
      ['hash', record.hash],
      ['name', record.name],
      ['providers', record.providers.join(', ')],
      ['created', formatStoredTime(record.createdAt)],
    ]),
    ...(limited
      ? []
      : ['', `It has no budget yet and is refused until one is set: loopers budget set ${record.hash.slice(0, 8)} --daily USD (or --unlimited).`]),
  ].join('\n')
}

/** `keys list`: every key in the store's order (oldest first), as a JSON array or a table (a hint when there are none). */
export async function listKeys(admin: KeyAdmin, json: boolean): Promise<string> {
  const records = await admin.listKeys()
  if (json) return JSON.stringify(records.map(keyJson))
  if (records.length === 0) return 'No keys yet. Create one with: loopers keys create --name <name> --provider <id>'
  return renderTable(
    [{ header: 'hash' }, { header: 'name' }, { header: 'providers' }, { header: 'active' }, { header: 'created' }],
    records.map((r) => [r.hash, r.name, r.providers.join(','), r.active ? 'yes' : 'revoked', formatStoredTime(r.createdAt)]),
  )
}

/** `keys revoke <key>`: marks the key revoked (a no-op if it already is); throws when `ref` names no single key. */
export async function revokeKey(admin: KeyAdmin, ref: string): Promise<string> {
  const record = await resolveRef(admin, ref)
  const hash = record.hash
  if (!record.active) return `Key ${hash} ("${record.name}") was already revoked.`
  if (!(await admin.revokeKey(hash))) throw unknownKey(hash)
  return `Revoked key ${hash} ("${record.name}"). Requests with it are refused from now on.`
}

/** Two-column "label  value" lines, indented, labels padded to the widest. */
export function renderFields(fields: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(...fields.map(([label]) => label.length))
  return fields.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`).join('\n')
}
