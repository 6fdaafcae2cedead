import { DEFAULT_HISTORY_DAYS, HISTORY_DAYS, type DaySpend } from '../budget/history.js'
import type { KeyAdmin } from '../budget/types.js'
import { formatUsd, microsToUsd } from '../money.js'
import { unknownKey, usageError } from './errors.js'
import { renderBar, renderTable } from './format.js'
import { resolveRef } from './key-ref.js'

/** `loopers budget history`: settled spend per UTC day (CONTRACT §3), every day of the range, oldest first. */

interface HistoryJson {
  hash: string
  days: Array<{ date: string; spent_usd: number }>
}

/** The public JSON shape, shared with `GET /api/keys/{hash}/history`. */
export function historyJson(hash: string, days: readonly DaySpend[]): HistoryJson {
  return { hash, days: days.map((d) => ({ date: d.date, spent_usd: microsToUsd(d.spentMicros) })) }
}

/** A day count 1..HISTORY_DAYS (undefined: the default); null when the text is not one. */
export function parseDays(text: string | undefined): number | null {
  if (text === undefined) return DEFAULT_HISTORY_DAYS
  if (!/^\d{1,3}$/.test(text.trim())) return null
  const days = Number(text.trim())
  return days >= 1 && days <= HISTORY_DAYS ? days : null
}

export const DAYS_HINT = `--days must be a whole number from 1 to ${HISTORY_DAYS} (history is kept ${HISTORY_DAYS} days)`

/** `budget history <key> [--days N] [--json]`: JSON, or one row per day with a bar scaled to the busiest day. */
export async function budgetHistory(admin: KeyAdmin, ref: string, daysText: string | undefined, json: boolean): Promise<string> {
  const count = parseDays(daysText)
  if (count === null) throw usageError(DAYS_HINT)
  const record = await resolveRef(admin, ref)
  const days = await admin.history(record.hash, count)
  if (days === null) throw unknownKey(record.hash)
  if (json) return JSON.stringify(historyJson(record.hash, days))
  const peak = Math.max(0, ...days.map((d) => d.spentMicros))
  const total = days.reduce((sum, d) => sum + d.spentMicros, 0)
  const table = renderTable(
    [{ header: 'date' }, { header: 'spent', align: 'right' }, { header: 'of busiest day' }],
    days.map((d) => [d.date, formatUsd(d.spentMicros), renderBar(d.spentMicros, peak)]),
  )
  return [
    `Settled spend of key ${record.hash} ("${record.name}") per UTC day, last ${count} days`,
    '',
    table,
    '',
    `Total: ${formatUsd(total)}`,
  ].join('\n')
}
