import type { Micros } from '../money.js'

/** Plain-text rendering for the human (non --json) CLI output. Pure functions: strings in, strings out. */

/** Shown in a cell that has no value (unlimited window, no session default). */
export const NONE = '—'

interface Column {
  header: string
  /** Right-aligned columns are for amounts and counts. */
  align?: 'left' | 'right'
}

/** Renders rows under upper-case headers, columns padded to their widest cell and separated by two spaces. */
export function renderTable(columns: Column[], rows: string[][]): string {
  const widths = columns.map((column, i) => Math.max(column.header.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]): string =>
    columns
      .map((column, i) => {
        const cell = cells[i] ?? ''
        const width = widths[i] ?? 0
        return column.align === 'right' ? cell.padStart(width) : cell.padEnd(width)
      })
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.header.toUpperCase())), ...rows.map(line)].join('\n')
}

/**
 * A spend bar such as "[########------------]  40%": filled in proportion to spent/limit (capped at full),
 * the percentage rounded down and allowed past 100 %. `limit` null or 0 (unlimited) gives NONE.
 */
export function renderBar(spent: Micros, limit: Micros | null, width = 20): string {
  if (limit === null || limit <= 0) return NONE
  const used = Math.max(0, spent)
  const filled = Math.min(width, Math.floor((used * width) / limit))
  const percent = Math.floor((used * 100) / limit)
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${`${percent}%`.padStart(4)}`
}

/** A UTC instant for people: "2026-03-01 14:05:00 UTC". */
export function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}

/** A creation timestamp as stored (ISO 8601) rendered like formatTime; unparsable text is shown as it is. */
export function formatStoredTime(iso: string): string {
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? iso : formatTime(date)
}
