import { invalidRequest } from '../errors.js'

/** Typed readers for request and response JSON; request readers throw invalid_request on wrong types. */

export type Json = Record<string, unknown>

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The request body's `model`, a required non-empty string. */
export function requireModel(body: Json): string {
  const value = body.model
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidRequest("'model' must be a non-empty string")
  }
  return value
}

/** An optional boolean field; undefined and null read as false. */
export function readFlag(body: Json, field: string): boolean {
  const value = body[field]
  if (value === undefined || value === null) return false
  if (typeof value !== 'boolean') throw invalidRequest(`'${field}' must be a boolean`)
  return value
}

/** An optional positive integer field; null when absent. */
export function readPositiveInt(body: Json, field: string): number | null {
  const value = body[field]
  if (value === undefined || value === null) return null
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalidRequest(`'${field}' must be a positive integer`)
  }
  return value
}

/** A non-negative integer from a response (usage counters); undefined when missing or malformed. */
export function readCount(source: unknown, field: string): number | undefined {
  if (!isObject(source)) return undefined
  const value = source[field]
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.ceil(value) : undefined
}
