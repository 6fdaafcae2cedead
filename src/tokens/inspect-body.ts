/**
 * What the counting worker reads of a big request body, so the proxy's event loop never parses or walks
 * it: the same checks and facts the small-body path computes on the main thread (valid JSON object, no
 * repeated key, media parts and fetched content, the loop fingerprint), and the byte spans of its
 * top-level members, of which the main thread parses only the small ones.
 */
import { findDuplicateKey } from '../http/json-keys.js'
import { topLevelMembers, type MemberSpan } from '../http/json-members.js'
import { fingerprintRequest } from '../loop/fingerprint.js'
import { LOOP_SHAPES } from '../loop/shapes/index.js'
import type { LoopFingerprint } from '../loop/types.js'
import { scanBody, type BodyScan } from './bound.js'

/** The worker's reading of one body: a refusal, or its facts and member spans. */
export type Inspection =
  | { ok: false; problem: 'not_json' | 'not_object' }
  | { ok: false; problem: 'duplicate_key'; key: string }
  | { ok: true; scan: BodyScan; fingerprint: LoopFingerprint | null; members: MemberSpan[] }

/** Reads `raw` as the small path does, in one go (this runs off the event loop). `shape`: a LOOP_SHAPES name, or null. */
export async function inspectBody(raw: Buffer, shape: string | null): Promise<Inspection> {
  let body: unknown
  try {
    body = JSON.parse(raw.toString('utf8'))
  } catch {
    return { ok: false, problem: 'not_json' }
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, problem: 'not_object' }
  const duplicate = await findDuplicateKey(raw, Infinity, Infinity)
  if (duplicate !== null) return { ok: false, problem: 'duplicate_key', key: duplicate }
  const scan = await scanBody(body, undefined, Infinity)
  const known = shape === null ? null : (LOOP_SHAPES[shape] ?? null)
  const fingerprint = fingerprintRequest(known, body as Record<string, unknown>)
  return { ok: true, scan, fingerprint, members: topLevelMembers(raw) }
}
