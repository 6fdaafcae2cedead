/**
 * The body stage of the pipeline: a request body read as one JSON object with no repeated key, its
 * media and fetched-content scan, its loop fingerprint, and the bytes to forward once the adapter has
 * edited it. A big body (BIG_BODY_BYTES or more) is parsed, checked and walked in the counting worker;
 * the event loop parses only its small top-level members, and forwards the raw bytes with the edited
 * members spliced in, so no step proportional to its size runs on the event loop.
 */
import { budgetUnavailable, invalidRequest } from '../errors.js'
import { createWordSet, keyReportOfParsed, scanKeys, type KeyReport } from '../http/json-keys.js'
import { appendMembers, lastMemberEnd, spliceMembers, topLevelMembers, type MemberEdit, type MemberSpan } from '../http/json-members.js'
import { scanJson, type JsonScan, type ScannedMember } from '../http/json-scan.js'
import { BIG_BODY_BYTES } from '../http/raw-body.js'
import { fingerprintRequest } from '../loop/fingerprint.js'
import { loopShapeName } from '../loop/shapes/index.js'
import type { LoopFingerprint, LoopItem, LoopShape, LoopTranscript } from '../loop/types.js'
import { isObject, type Json } from '../providers/body.js'
import { NOTHING_SCANNED, SCAN_WORDS, scanBody, type BodyScan } from '../tokens/bound.js'
import type { Inspection } from '../tokens/inspect-body.js'
import type { TokenCounter } from '../tokens/worker.js'
import { EditWatch } from './edit-watch.js'
import { blankJson, keepBody } from './keep-shapes.js'
import { defineMembers } from './lazy-members.js'

/** A top-level member of a big body up to this size is parsed on the event loop; a larger one on first read. */
const MAX_EAGER_MEMBER_BYTES = 16 * 1024
/** All eagerly parsed members of one big body together (~1 ms of parsing at most). */
const MAX_EAGER_BYTES = 64 * 1024
/**
 * A body this large (and under BIG_BODY_BYTES) is not parsed whole: its validating key scan gives JSON.parse's verdict,
 * each top-level member is parsed when first read (one up to LAZY_EAGER_MEMBER_BYTES at once), a conversation's items
 * one by one. Smaller agent bodies cost the same CPU either way (bench/lazy-read.mjs); from here on, less.
 */
export const LAZY_MIN_BYTES = 16 * 1024
/** A top-level member of a lazily read body up to this size is parsed at once (model, caps, stream: read by every request). */
const LAZY_EAGER_MEMBER_BYTES = 256
/**
 * A body with more top-level members than this is parsed whole, as a small one is: defining tens of thousands of
 * members one by one (a dense body of ~1 MiB) held the event loop ~2× as long as JSON.parse does. Provider requests
 * have a few dozen at most.
 */
export const LAZY_MAX_MEMBERS = 256
/** Top-level members a big body may have: no provider's request has more than a few dozen. */
const MAX_BIG_BODY_MEMBERS = 1024
/** What the key scan looks out for, so that a body without any of it is not walked again for `scan()`. */
const SCAN_WORD_SET = createWordSet(SCAN_WORDS)
const SCAN_WORD_STRINGS: ReadonlySet<string> = new Set(SCAN_WORDS)
/**
 * A parsed body up to this size is first told free of repeated keys by counting (keyReportOfParsed), its key scan
 * run only when that fails: ~1k instructions against the scan's ~4k for the bench's one-line chat. Larger bodies
 * hold a colon in some string too often to gain.
 */
const COUNTED_MAX_BYTES = 512
/** A body this large, edited, is forwarded as its raw bytes with the edited members spliced in (a few times cheaper than re-serializing it). */
export const SPLICE_MIN_BYTES = 4 * 1024
/** Retry-After of a big body the counting worker had no room for: its queue drains in about that time. */
const BUSY_RETRY_AFTER_SECONDS = 1

export interface RequestBody {
  /**
   * The body as a JSON object, for the adapter to read and edit (`prepareBody`). Of a big body, a large
   * top-level member is parsed when first read: the pipeline reads only small fields (model, caps, tools).
   */
  json: Json
  raw: Buffer
  /** Media parts and fetched content (`scanBody`), walked in slices or in the worker; at once when already known. */
  scan(): BodyScan | Promise<BodyScan>
  /** The loop fingerprint of the body as sent (before any edit). */
  fingerprint(): LoopFingerprint | null
  /**
   * `json`, for the adapter to edit (`prepareBody`) before `edited()`: of a body of SPLICE_MIN_BYTES or more, a view
   * that notes which members the adapter touched, so `edited()` re-serializes only those (./edit-watch.ts).
   */
  editable(): Json
  /**
   * The bytes to forward after `json` was edited: `raw` with the edited members spliced in (a big body, or one
   * edited through `editable()` of SPLICE_MIN_BYTES or more), else re-serialized.
   */
  edited(): Promise<Buffer>
  /**
   * The JSON text of top-level member `key` as it stands, undefined when absent: of a big body, a large
   * member not read since is the client's bytes (a span of `raw`, never parsed); others are serialized.
   */
  member(key: string): Buffer | string | undefined
}

/**
 * Reads `raw` for a route whose conversation has `shape`; throws invalid_request for a body the proxy cannot
 * meter, and a retryable budget_unavailable (503, Retry-After) for a big body the counting worker cannot
 * read now (no room in its queue within its wait, a timeout, a fault): never parsed on the event loop instead.
 */
export function readRequestBody(raw: Buffer, shape: LoopShape | null, counter: TokenCounter): RequestBody | Promise<RequestBody> {
  if (raw.length < LAZY_MIN_BYTES) return readParsedBody(raw, shape)
  if (raw.length < BIG_BODY_BYTES) return readLazyBody(raw, shape)
  const name = shape === null ? null : loopShapeName(shape)
  // A shape the worker does not know (every adapter's shape is in LOOP_SHAPES): read it here, correct but not sliced.
  if (shape !== null && name === null) return readParsedBody(raw, shape)
  return readInWorker(raw, name, counter)
}

async function readInWorker(raw: Buffer, name: string | null, counter: TokenCounter): Promise<RequestBody> {
  const inspection = await counter.inspect(raw, name)
  if (inspection === null) {
    throw budgetUnavailable('the proxy is busy reading other large request bodies; retry shortly', { retryAfterSeconds: BUSY_RETRY_AFTER_SECONDS })
  }
  return readBig(raw, inspection)
}

/**
 * Reads `raw` on the event loop, whatever its size, parsing it whole: the path of bodies under LAZY_MIN_BYTES. A body
 * whose key scan ends within its first slice (every small one) is read in the same turn, without a promise.
 */
export function readParsedBody(raw: Buffer, shape: LoopShape | null): RequestBody | Promise<RequestBody> {
  const json = parseJsonBody(raw)
  const counted = raw.length <= COUNTED_MAX_BYTES ? keyReportOfParsed(raw, json, SCAN_WORD_STRINGS) : null
  if (counted !== null) return parsedBody(raw, shape, json, counted)
  // The key scan reads every key and string anyway: it also tells whether `scan()` can find anything.
  const keys = scanKeys(raw, SCAN_WORD_SET)
  if (keys instanceof Promise) return keys.then((report) => parsedBody(raw, shape, json, report))
  return parsedBody(raw, shape, json, keys)
}

/**
 * Reads `raw` (not empty) on the event loop without parsing it whole: what readParsedBody reads, refuses and forwards,
 * with each top-level member parsed when first read and a conversation's items when the fingerprint reads them.
 */
export function readLazyBody(raw: Buffer, shape: LoopShape | null): RequestBody | Promise<RequestBody> {
  const scan = scanJson(raw, SCAN_WORD_SET)
  if (scan instanceof Promise) return scan.then((done) => lazyBody(raw, shape, done))
  return lazyBody(raw, shape, scan)
}

function parsedBody(raw: Buffer, shape: LoopShape | null, json: Json, keys: KeyReport): RequestBody {
  refuseDuplicate(keys.duplicate)
  const body = new ParsedBody(json, raw, shape, keys.wordSeen, null)
  if (raw.length < LAZY_MIN_BYTES) keepBody(body)
  return body
}

/** A body of LAZY_MIN_BYTES or more, as its validating scan found it: the errors JSON.parse and the key scan would give, else its members to parse on read. */
function lazyBody(raw: Buffer, shape: LoopShape | null, scan: JsonScan): RequestBody {
  if (!scan.ok) throw scan.problem === 'not_json' ? notJson() : notObject()
  refuseDuplicate(scan.keys.duplicate)
  // The scan has given the verdict and the key report: only the parse is left to do whole.
  if (scan.members.length > LAZY_MAX_MEMBERS) return new ParsedBody(parseJsonBody(raw), raw, shape, scan.keys.wordSeen, null)
  const json: Json = {}
  const materialized = new Set<string>()
  defineMembers(json, raw, scan.members, (m) => m.valueEnd - m.valueStart <= LAZY_EAGER_MEMBER_BYTES, materialized)
  return new ParsedBody(json, raw, shape, scan.keys.wordSeen, scan.members)
}

/** A body read on the event loop, parsed whole or (`lazy`) member by member: one object per request, not a context and four closures. */
class ParsedBody implements RequestBody {
  constructor(
    readonly json: Json,
    readonly raw: Buffer,
    private readonly shape: LoopShape | null,
    /** False when no key or string value is one of SCAN_WORDS: the walk would find nothing. */
    private readonly mayScanSomething: boolean,
    /** Of a body read lazily, its top-level members' spans (its scan found them); null when it was parsed whole. */
    private readonly members: readonly ScannedMember[] | null,
  ) {}

  /** The members the adapter touched through `editable()`'s view. */
  private watch: EditWatch | null = null

  scan(): BodyScan | Promise<BodyScan> {
    return this.mayScanSomething ? scanBody(this.json) : NOTHING_SCANNED
  }

  fingerprint(): LoopFingerprint | null {
    // Of a lazily read body, the shape reads a conversation's items from their spans: only those it hashes are parsed.
    return fingerprintRequest(this.shape, this.json)
  }

  editable(): Json {
    if (this.raw.length < SPLICE_MIN_BYTES) return this.json
    this.watch ??= new EditWatch(this.json)
    return this.watch.view
  }

  async edited(): Promise<Buffer> {
    if (this.watch === null) return Buffer.from(JSON.stringify(this.json))
    // Members only added (a stream's include_usage): they go after the last one, found from the end.
    const added = this.watch.additions(this.json)
    if (added !== null && added.length === 0) return this.raw
    const end = added === null ? -1 : lastMemberEnd(this.raw)
    if (added !== null && end >= 0) return appendMembers(this.raw, end, added)
    // A lazily read body's spans are known from its scan; another is walked for them.
    const members = this.members ?? topLevelMembers(this.raw)
    const edits = this.watch.edits(this.json, members)
    return edits.length === 0 ? this.raw : spliceMembers(this.raw, members, edits)
  }

  member(key: string): string | undefined {
    return Object.hasOwn(this.json, key) ? (JSON.stringify(this.json[key]) as string | undefined) : undefined
  }

  /**
   * This body's objects with none of their content, for the idle release (./keep-shapes.ts): parsed from a blank of
   * `raw` as this one was, then given the members the adapter added since, so its hidden classes are this body's;
   * with the loop guard's reading of it (its transcript and first item: their classes die with their last instance too).
   */
  blankCopy(): BlankBody {
    const json = blankJson(parseJsonBody(this.raw)) as Json
    for (const key in this.json) if (!Object.hasOwn(json, key)) json[key] = blankJson(this.json[key]) as Json[string]
    const transcript = this.shape?.read(json) ?? null
    const item = transcript !== null && transcript.items.length > 0 ? transcript.item(transcript.items, 0) : null
    return { body: new ParsedBody(json, NO_BYTES, this.shape, false, null), transcript, item }
  }
}

/** A ParsedBody's blank copy and what the loop guard reads of it. */
interface BlankBody {
  body: ParsedBody
  transcript: LoopTranscript | null
  item: LoopItem | null
}

const NO_BYTES = Buffer.alloc(0)

function readBig(raw: Buffer, inspection: Inspection): RequestBody {
  if (!inspection.ok) {
    if (inspection.problem === 'duplicate_key') refuseDuplicate(inspection.key)
    throw inspection.problem === 'not_json' ? notJson() : notObject()
  }
  const { members, scan, fingerprint } = inspection
  if (members.length > MAX_BIG_BODY_MEMBERS) throw invalidRequest(`a request body of 1 MiB or more may have at most ${MAX_BIG_BODY_MEMBERS} top-level fields`)
  const json: Json = {}
  const materialized = new Set<string>()
  let eagerBytes = 0
  defineMembers(
    json,
    raw,
    members,
    ({ valueStart, valueEnd }) => {
      const size = valueEnd - valueStart
      if (size > MAX_EAGER_MEMBER_BYTES || eagerBytes + size > MAX_EAGER_BYTES) return false
      eagerBytes += size
      return true
    },
    materialized,
  )
  // The eager members as read, to tell which the adapter changed.
  const before = new Map<string, string>()
  for (const { key } of members) {
    const descriptor = Object.getOwnPropertyDescriptor(json, key)
    if (descriptor !== undefined && descriptor.get === undefined) before.set(key, JSON.stringify(descriptor.value))
  }
  return {
    json,
    raw,
    scan: () => scan,
    fingerprint: () => fingerprint,
    editable: () => json,
    async edited() {
      const edits = memberEdits(json, members, before, materialized)
      return edits.length === 0 ? raw : spliceMembers(raw, members, edits)
    },
    member(key) {
      const descriptor = Object.getOwnPropertyDescriptor(json, key)
      if (descriptor === undefined) return undefined
      const span = descriptor.get !== undefined && !materialized.has(key) ? members.find((m) => m.key === key) : undefined
      if (span !== undefined) return raw.subarray(span.valueStart, span.valueEnd)
      return JSON.stringify(descriptor.get !== undefined ? json[key] : descriptor.value) as string | undefined
    },
  }
}

/**
 * What changed in `json` since it was read: members set to a new value, removed or added. A large member
 * still behind its lazy getter is unchanged unless it was read (it may have been edited in place).
 */
function memberEdits(json: Json, members: readonly MemberSpan[], before: Map<string, string>, materialized: Set<string>): MemberEdit[] {
  const edits: MemberEdit[] = []
  const original = new Set<string>()
  for (const { key } of members) {
    original.add(key)
    const descriptor = Object.getOwnPropertyDescriptor(json, key)
    if (descriptor === undefined) {
      edits.push({ key, json: null })
      continue
    }
    if (descriptor.get !== undefined && !materialized.has(key)) continue
    const text = JSON.stringify(descriptor.get !== undefined ? json[key] : descriptor.value) as string | undefined
    if (text === undefined) edits.push({ key, json: null })
    else if (text !== before.get(key)) edits.push({ key, json: text })
  }
  for (const key of Object.keys(json)) {
    if (original.has(key)) continue
    const text = JSON.stringify(json[key]) as string | undefined
    if (text !== undefined) edits.push({ key, json: text })
  }
  return edits
}

/** The request body as a JSON object; invalid_request otherwise. */
function parseJsonBody(raw: Buffer): Json {
  if (raw.length === 0) throw invalidRequest('the request needs a JSON body')
  let parsed: unknown
  try {
    parsed = JSON.parse(raw.toString('utf8'))
  } catch {
    throw notJson()
  }
  if (!isObject(parsed)) throw notObject()
  return parsed
}

// A repeated key could be read either way by the provider: refuse rather than guess which one it keeps.
function refuseDuplicate(key: string | null): void {
  if (key !== null) throw invalidRequest(`the JSON key '${key.slice(0, 64)}' appears twice in one object; send each key once`)
}

const notJson = () => invalidRequest('the request body is not valid JSON')
const notObject = () => invalidRequest('the request body must be a JSON object')
