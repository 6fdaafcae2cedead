import type { FastifyInstance, FastifyReply } from 'fastify'
import { WINDOW_NAMES, type KeyAdmin, type KeyRecord, type WindowName } from '../budget/types.js'
import { windowJson, type WindowJson } from '../cli/budget.js'
import { eventJson, EVENTS_KEPT, parseLimit } from '../budget/events.js'
import { DAYS_HINT, historyJson, parseDays } from '../cli/history.js'
import { keyJson } from '../cli/keys.js'
import { StoreUnavailableError } from '../errors.js'
import { microsToUsd } from '../money.js'

/** The dashboard's read-only JSON (CONTRACT §4): keys in the `keys list --json` shape plus `windows` as `budget status --json`. */

type KeyWithWindows = ReturnType<typeof keyJson> & { windows: Record<WindowName, WindowJson> }

/** One key with its windows, through the CLI's own JSON functions so the shapes cannot drift; null when the key is gone. */
async function keyWithWindows(keys: KeyAdmin, record: KeyRecord): Promise<KeyWithWindows | null> {
  const windows = await keys.status(record.hash)
  if (windows === null) return null
  return { ...keyJson(record), windows: Object.fromEntries(WINDOW_NAMES.map((w) => [w, windowJson(windows[w])])) as Record<WindowName, WindowJson> }
}

/** Registers `GET /api/keys` and `GET /api/keys/{hash}` on `app`; a store fault answers 503 `budget_unavailable`. */
export function registerKeyApi(app: FastifyInstance, keys: KeyAdmin): void {
  app.get('/api/keys', async (_request, reply) =>
    answer(reply, async () => {
      const records = await keys.listKeys()
      const all = await Promise.all(records.map((record) => keyWithWindows(keys, record)))
      return all.filter((k): k is KeyWithWindows => k !== null)
    }),
  )
  app.get<{ Params: { hash: string } }>('/api/keys/:hash', async (request, reply) =>
    answer(reply, async () => {
      const record = await resolved(keys, request.params.hash, reply)
      if (record === null) return reply
      const key = await keyWithWindows(keys, record)
      if (key === null) return fail(reply, 404, 'not_found', NOT_FOUND)
      return key
    }),
  )
}

/** Registers `GET /api/keys/{key}/history?days=N` (the `budget history --json` shape); a bad `days` is a 400. */
export function registerHistoryApi(app: FastifyInstance, keys: KeyAdmin): void {
  app.get<{ Params: { hash: string }; Querystring: { days?: string } }>('/api/keys/:hash/history', async (request, reply) =>
    answer(reply, async () => {
      const count = parseDays(request.query.days)
      if (count === null) return fail(reply, 400, 'invalid_request', DAYS_HINT.replace('--days', 'days'))
      const record = await resolved(keys, request.params.hash, reply)
      if (record === null) return reply
      const days = await keys.history(record.hash, count)
      if (days === null) return fail(reply, 404, 'not_found', NOT_FOUND)
      return historyJson(record.hash, days)
    }),
  )
}

/** Registers `GET /api/events?limit=N` (1..1000, default 50): recent refusals and cut-offs, newest first. */
export function registerEventApi(app: FastifyInstance, keys: KeyAdmin): void {
  app.get<{ Querystring: { limit?: string } }>('/api/events', async (request, reply) =>
    answer(reply, async () => {
      const limit = parseLimit(request.query.limit)
      if (limit === null) return fail(reply, 400, 'invalid_request', `limit must be a whole number from 1 to ${EVENTS_KEPT}`)
      return (await keys.recentEvents(limit)).map(eventJson)
    }),
  )
}

/** One live session in the API (`GET /api/sessions`): its key, spend, hold, steps and limits. */
interface SessionJson {
  hash: string
  name: string
  id: string
  spent_usd: number
  held_usd: number
  steps: number
  budget_usd: number | null
  max_steps: number | null
}

/** Registers `GET /api/sessions[?key=<key>]`: live sessions of every key (or one), by key then id, at most 200. */
export function registerSessionApi(app: FastifyInstance, keys: KeyAdmin): void {
  app.get<{ Querystring: { key?: string } }>('/api/sessions', async (request, reply) =>
    answer(reply, async () => {
      let hash: string | null = null
      if (request.query.key !== undefined) {
        const record = await resolved(keys, request.query.key, reply)
        if (record === null) return reply
        hash = record.hash
      }
      const [found, records] = await Promise.all([keys.sessions(hash), keys.listKeys()])
      const names = new Map(records.map((r) => [r.hash, r.name]))
      return found.map((s): SessionJson => ({
        hash: s.hash,
        name: names.get(s.hash) ?? '',
        id: s.id,
        spent_usd: microsToUsd(s.spentMicros),
        held_usd: microsToUsd(s.heldMicros),
        steps: s.steps,
        budget_usd: s.budgetMicros === null ? null : microsToUsd(s.budgetMicros),
        max_steps: s.maxSteps,
      }))
    }),
  )
}

const NOT_FOUND = 'no key has this hash, hash prefix (8+ hex digits) or name'

/**
 * The key a path segment names (full hash, unique prefix of 8+ hex digits, or name); null after
 * answering 404 `not_found` (no such key) or 400 `invalid_request` (ambiguous).
 */
async function resolved(keys: KeyAdmin, ref: string, reply: FastifyReply): Promise<KeyRecord | null> {
  const found = await keys.resolveKey(ref)
  if (found.ok) return found.record
  if (found.reason === 'ambiguous') fail(reply, 400, 'invalid_request', `ambiguous key: ${found.matches} keys match; give more of the hash`)
  else fail(reply, 404, 'not_found', NOT_FOUND)
  return null
}

async function answer<T>(reply: FastifyReply, work: () => Promise<T>): Promise<T | FastifyReply> {
  try {
    return await work()
  } catch (error) {
    if (error instanceof StoreUnavailableError) return fail(reply, 503, 'budget_unavailable', 'the budget store did not answer')
    throw error
  }
}

function fail(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).header('x-loopers-error-code', code).send({ error: { code, message } })
}
