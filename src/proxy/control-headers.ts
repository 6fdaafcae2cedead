import type { IncomingHttpHeaders } from 'node:http'
import type { SessionRequest } from '../budget/types.js'
import { AmountError, parseUsd } from '../money.js'
import { invalidRequest } from '../errors.js'
import type { UpstreamCredential } from '../providers/types.js'
import { headerValue } from '../http/headers.js'
import type { PathSession } from './target.js'

/** The `X-Loopers-*` request headers: session limits and upstream credentials. None is forwarded. */

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** What mayHaveControlHeaders reads of a request: its headers and the connection's request they came from. */
export interface HeaderSource {
  headers: IncomingHttpHeaders
  raw: { headers: IncomingHttpHeaders; rawHeaders?: readonly string[] }
}

/**
 * False when `request` has no `X-Loopers-*` header: none of its raw header names starts with `x-l` in any case (the
 * headers object's names are those, lowercased). True when it may have one, or when its headers are not the raw
 * request's. Most requests have none: this read of a short array of names replaces a lookup of each absent control
 * header in the headers object (a megamorphic load each).
 */
export function mayHaveControlHeaders(request: HeaderSource): boolean {
  const raw = request.raw
  const names = raw.rawHeaders
  if (names === undefined || request.headers !== raw.headers) return true
  for (let i = 0; i < names.length; i += 2) {
    const name = names[i] as string
    if (name.length > 10 && (name.charCodeAt(0) | 0x20) === 0x78 && name.charCodeAt(1) === 0x2d && (name.charCodeAt(2) | 0x20) === 0x6c) return true
  }
  return false
}

/**
 * Session limits from the headers and the path (`/session/{id}/…`, see target.ts); null without a session id.
 * Throws invalid_request on bad values, and when path and header give one value two different ways.
 */
export function readSession(headers: IncomingHttpHeaders, path: PathSession | null = null): SessionRequest | null {
  const id = oneOf('session id', path?.id, headerValue(headers, 'x-loopers-session-id'))
  const budget = oneOf('session budget', path?.budget, headerValue(headers, 'x-loopers-session-budget'))
  const steps = oneOf(
    'session step limit',
    path?.maxSteps,
    headerValue(headers, 'x-loopers-session-max-steps') ?? headerValue(headers, 'x-loopers-max-steps'),
  )
  const loopLimit = readLoopLimit(headers)
  if (id === null) {
    if (budget !== null || steps !== null || loopLimit !== null) {
      throw invalidRequest('X-Loopers-Session-Budget, -Max-Steps and -Loop-Limit need X-Loopers-Session-ID')
    }
    return null
  }
  if (!SESSION_ID.test(id)) throw invalidRequest('X-Loopers-Session-ID must be 1-128 characters of A-Z a-z 0-9 . _ : -')
  let budgetMicros: number | null = null
  if (budget !== null) {
    try {
      budgetMicros = parseUsd(budget)
    } catch (error) {
      if (error instanceof AmountError) throw invalidRequest(`X-Loopers-Session-Budget: ${error.message}`)
      throw error
    }
    if (budgetMicros === 0) throw invalidRequest('X-Loopers-Session-Budget must be above 0')
  }
  let maxSteps: number | null = null
  if (steps !== null) {
    if (!/^\d{1,9}$/.test(steps) || Number(steps) < 1) throw invalidRequest('X-Loopers-Session-Max-Steps must be a positive integer')
    maxSteps = Number(steps)
  }
  return { id, budgetMicros, maxSteps, ...(loopLimit === null ? {} : { loopLimit }) }
}

/**
 * `X-Loopers-Loop-Limit`: the repeats of one step the session allows (0 = none), never above the key's;
 * null when absent. Throws invalid_request unless it is a non-negative integer.
 */
export function readLoopLimit(headers: IncomingHttpHeaders): number | null {
  const value = headerValue(headers, 'x-loopers-loop-limit')
  if (value === null) return null
  if (!/^\d{1,9}$/.test(value)) throw invalidRequest('X-Loopers-Loop-Limit must be a non-negative integer')
  return Number(value)
}

/** The value given in the path or the header; both is fine only when they agree. */
function oneOf(what: string, fromPath: string | null | undefined, fromHeader: string | null): string | null {
  if (fromPath === undefined || fromPath === null) return fromHeader
  if (fromHeader !== null && fromHeader !== fromPath) throw invalidRequest(`the ${what} in the path and in the X-Loopers header differ`)
  return fromPath
}

/** An upstream credential given in `X-Loopers-*` headers (AWS SigV4 set, or a provider key); null if none. */
export function readLoopersCredential(headers: IncomingHttpHeaders, defaultRegion: string): UpstreamCredential | null {
  const accessKeyId = headerValue(headers, 'x-loopers-aws-access-key')
  const secretAccessKey = headerValue(headers, 'x-loopers-aws-secret-key')
  if (accessKeyId !== null || secretAccessKey !== null) {
    if (accessKeyId === null || secretAccessKey === null) {
      throw invalidRequest('X-Loopers-AWS-Access-Key and X-Loopers-AWS-Secret-Key must be sent together')
    }
    const sessionToken = headerValue(headers, 'x-loopers-aws-session-token')
    const region = headerValue(headers, 'x-loopers-aws-region') ?? defaultRegion
    if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) throw invalidRequest('X-Loopers-AWS-Region is not an AWS region')
    return { kind: 'aws', accessKeyId, secretAccessKey, region, ...(sessionToken === null ? {} : { sessionToken }) }
  }
  const key = headerValue(headers, 'x-loopers-provider-key')
  return key === null ? null : { kind: 'apiKey', value: key }
}
