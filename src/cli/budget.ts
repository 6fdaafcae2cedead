import { WINDOW_NAMES, type BudgetChange, type KeyAdmin, type KeyRecord, type WindowName, type WindowStatus } from '../budget/types.js'
import { unknownKey, usageError } from './errors.js'
import { resolveRef } from './key-ref.js'
import { NONE, formatTime, renderBar, renderTable } from './format.js'
import { renderFields } from './keys.js'
import { DEFAULT_LOOP_LIMIT, DEFAULT_LOOP_WINDOW_SECONDS } from '../loop/rule.js'
import { AmountError, formatUsd, microsToUsd, parseCount, parseUsd } from '../money.js'

/** `loopers budget …`: each command takes a KeyAdmin and returns the text to print on stdout. */

/** The flags of `budget set` as commander hands them over (raw strings; undefined = not given). */
export interface BudgetFlags {
  minute?: string
  hourly?: string
  daily?: string
  weekly?: string
  monthly?: string
  session?: string
  sessionMaxSteps?: string
  unlimited?: boolean
  rpm?: string
  loopLimit?: string
  loopWindow?: string
}

const FLAG_LIST =
  '--minute, --hourly, --daily, --weekly, --monthly, --session, --session-max-steps, --rpm, --loop-limit, --loop-window, --unlimited'

/**
 * Turns `budget set` flags into a BudgetChange (0 removes a limit); usage error on a bad value, or on no
 * flag at all unless `optional` (`keys create`, where they are the new key's first limits).
 */
export function parseBudgetFlags(flags: BudgetFlags, optional = false): BudgetChange {
  const change: BudgetChange = {}
  const limits: Partial<Record<WindowName, number>> = {}
  for (const window of WINDOW_NAMES) {
    const raw = flags[window]
    if (raw !== undefined) limits[window] = parsed(`--${window}`, () => parseUsd(raw))
  }
  if (Object.keys(limits).length > 0) change.limits = limits
  const session = flags.session
  if (session !== undefined) change.sessionBudgetMicros = parsed('--session', () => parseUsd(session))
  const steps = flags.sessionMaxSteps
  if (steps !== undefined) change.sessionMaxSteps = parsed('--session-max-steps', () => parseCount(steps, 'the step limit'))
  const rpm = flags.rpm
  if (rpm !== undefined) change.rpm = parsed('--rpm', () => parseCount(rpm, 'the request rate'))
  const loopLimit = flags.loopLimit
  if (loopLimit !== undefined) change.loopLimit = parsed('--loop-limit', () => parseCount(loopLimit, 'the loop limit'))
  const loopWindow = flags.loopWindow
  if (loopWindow !== undefined) change.loopWindowSeconds = parsed('--loop-window', () => parseCount(loopWindow, 'the loop window'))
  if (flags.unlimited === true) change.unlimited = true
  if (Object.keys(change).length === 0 && !optional) throw usageError(`budget set needs at least one of ${FLAG_LIST}`)
  return change
}

function parsed(flag: string, parse: () => number): number {
  try {
    return parse()
  } catch (err) {
    if (err instanceof AmountError) throw usageError(`${flag}: ${err.message}`)
    throw err
  }
}

/** `budget set`: applies the change and returns the key's resulting limits (JSON or prose); unknownKey if none. */
export async function setBudget(admin: KeyAdmin, ref: string, change: BudgetChange, json: boolean): Promise<string> {
  const hash = (await resolveRef(admin, ref)).hash
  const record = await admin.setBudget(hash, change)
  if (record === null) throw unknownKey(hash)
  if (json) {
    return JSON.stringify({
      hash: record.hash,
      limits_usd: Object.fromEntries(WINDOW_NAMES.map((w) => [w, usdOrNull(record.limits[w])])),
      session_budget_usd: usdOrNull(record.sessionBudgetMicros),
      session_max_steps: record.sessionMaxSteps ?? null,
      unlimited: record.unlimited,
      rpm: record.rpm,
      loop: loopJson(record),
    })
  }
  return [
    `Updated budget of key ${record.hash} ("${record.name}"):`,
    renderFields([
      ...WINDOW_NAMES.map((w) => [w, limitText(record.limits[w])] as const),
      ['session', sessionText(record)],
      ['rpm', record.rpm === null ? 'no rate limit' : `${record.rpm} requests per minute`],
      ['loop guard', loopText(record)],
      ['unlimited', unlimitedText(record)],
    ]),
  ].join('\n')
}

/** The public JSON shape of one window (CONTRACT §3 `budget status`). */
export interface WindowJson {
  limit_usd: number | null
  spent_usd: number
  held_usd: number
  remaining_usd: number | null
  resets_at: string
}

/** One window in the public JSON shape; remaining = limit − spent − held, never below 0; null when unlimited. */
export function windowJson(status: WindowStatus): WindowJson {
  const remaining = remainingMicros(status)
  return {
    limit_usd: usdOrNull(status.limitMicros),
    spent_usd: microsToUsd(status.spentMicros),
    held_usd: microsToUsd(status.heldMicros),
    remaining_usd: remaining === null ? null : microsToUsd(remaining),
    resets_at: status.resetsAt.toISOString(),
  }
}

/** The request-rate part of `budget status --json`: the key's `--rpm` and the current minute's admitted requests. */
interface RateJson {
  rpm: number | null
  requests_this_minute: number
  resets_at: string
}

function rateJson(record: KeyRecord, windows: Record<WindowName, WindowStatus>): RateJson {
  return { rpm: record.rpm, requests_this_minute: windows.minute.requests ?? 0, resets_at: windows.minute.resetsAt.toISOString() }
}

/**
 * `budget status`: every window's current period, as `{hash, windows, …}` JSON (the contract's shape
 * plus `unlimited` and `rate`) or a table with spend bars.
 */
export async function budgetStatus(admin: KeyAdmin, ref: string, json: boolean): Promise<string> {
  const hash = (await resolveRef(admin, ref)).hash
  const record = await admin.getKey(hash)
  const windows = record === null ? null : await admin.status(hash)
  if (record === null || windows === null) throw unknownKey(hash)
  if (json) {
    return JSON.stringify({
      hash,
      windows: Object.fromEntries(WINDOW_NAMES.map((w) => [w, windowJson(windows[w])])),
      unlimited: record.unlimited,
      rate: rateJson(record, windows),
      loop: loopJson(record),
    })
  }
  return renderStatus(record, windows)
}

/** The human status view: a heading, one row per window, then the session defaults. */
function renderStatus(record: KeyRecord, windows: Record<WindowName, WindowStatus>): string {
  const state = record.active ? 'active' : 'REVOKED'
  const table = renderTable(
    [
      { header: 'window' },
      { header: 'limit', align: 'right' },
      { header: 'spent', align: 'right' },
      { header: 'held', align: 'right' },
      { header: 'remaining', align: 'right' },
      { header: 'resets at' },
      { header: 'used' },
    ],
    WINDOW_NAMES.map((w) => {
      const s = windows[w]
      const remaining = remainingMicros(s)
      return [
        w,
        s.limitMicros === null ? NONE : formatUsd(s.limitMicros),
        formatUsd(s.spentMicros),
        formatUsd(s.heldMicros),
        remaining === null ? NONE : formatUsd(remaining),
        formatTime(s.resetsAt),
        renderBar(s.spentMicros, s.limitMicros),
      ]
    }),
  )
  return [
    `Budget of key ${record.hash} ("${record.name}", ${state}, ${record.providers.join(', ')})`,
    '',
    table,
    '',
    `Session defaults: ${sessionText(record)}`,
    `Without a window limit: ${unlimitedText(record)}`,
    `Request rate: ${rateText(record, windows)}`,
    `Loop guard: ${loopText(record)}`,
  ].join('\n')
}

function remainingMicros(status: WindowStatus): number | null {
  if (status.limitMicros === null) return null
  return Math.max(0, status.limitMicros - status.spentMicros - status.heldMicros)
}

function usdOrNull(micros: number | null | undefined): number | null {
  return micros === null || micros === undefined ? null : microsToUsd(micros)
}

function limitText(micros: number | undefined): string {
  return micros === undefined ? 'no limit' : formatUsd(micros)
}

/** The loop guard settings of `budget status --json` and `budget set --json`: the limit in force (0 = off) and its window. */
interface LoopJson {
  limit: number
  window_seconds: number
  /** True when the key leaves them at the defaults. */
  default_limit: boolean
  default_window: boolean
}

function loopJson(record: KeyRecord): LoopJson {
  return {
    limit: record.loopLimit ?? DEFAULT_LOOP_LIMIT,
    window_seconds: record.loopWindowSeconds ?? DEFAULT_LOOP_WINDOW_SECONDS,
    default_limit: record.loopLimit === null,
    default_window: record.loopWindowSeconds === null,
  }
}

function loopText(record: KeyRecord): string {
  const { limit, window_seconds: seconds } = loopJson(record)
  if (limit === 0) return 'off (--loop-limit 0)'
  return `a step may repeat ${limit} times within ${seconds} s${record.loopLimit === null ? ' (default)' : ''}`
}

/** This minute's admitted requests against the key's `--rpm`. */
function rateText(record: KeyRecord, windows: Record<WindowName, WindowStatus>): string {
  const count = windows.minute.requests ?? 0
  return record.rpm === null ? `${count} requests this minute, no limit` : `${count} of ${record.rpm} requests this minute`
}

/** Whether a key with no window limit may be used (`--unlimited`), or is refused with budget_not_set. */
function unlimitedText(record: KeyRecord): string {
  if (record.unlimited) return 'allowed (--unlimited)'
  const limited = WINDOW_NAMES.some((w) => record.limits[w] !== undefined)
  return limited ? 'refused (not --unlimited)' : 'refused: requests get budget_not_set until a limit or --unlimited is set'
}

function sessionText(record: KeyRecord): string {
  const budget = record.sessionBudgetMicros === null ? 'no budget' : `${formatUsd(record.sessionBudgetMicros)} per session`
  const steps = record.sessionMaxSteps === null ? 'no step limit' : `at most ${record.sessionMaxSteps} steps`
  return `${budget}, ${steps}`
}
