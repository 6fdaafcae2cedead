import { AsyncResource, executionAsyncResource } from 'node:async_hooks'
import { serialize } from 'node:v8'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { withPlannedInput } from '../pricing/cost.js'
import type { GateEntry } from './key-gate.js'
import { createUndiciRequestKeeper, blankHeadersKeepingRead, destroyOneSocket } from './keep-undici-request.js'
import { createWritevExample } from './keep-node-write.js'

/**
 * One example of each per-request object, kept through the idle release. V8 holds an object type's hidden classes
 * (maps) only while an instance lives, optimized code holds them weakly, and a memory-reducing collection drops
 * every map no live object uses: without a live example the request path's optimized code is thrown away at each
 * quiet period and the next few thousand requests run slower while it is rebuilt (bench/idle-retier.mjs).
 * An example matters only through a quiet period, so one is kept only while the proxy is otherwise idle (`keepShapes`'
 * inflight): under load nothing is stored (a young object stored into this long-lived one costs a write barrier and
 * drags its graph through the next scavenges). None holds a
 * body (the pipeline let go of it; an UpstreamCall its undici request), a socket open (a closed one is only an
 * object) or a reservation (settled); what a client sent is let go before each release (`blankKept`). Objects that
 * carry a client's data all their life (a parsed body, upstream headers) are kept as blank copies made along the
 * same hidden-class transitions: their keys, none of their values.
 */
export const kept: Kept = {
  request: null,
  reply: null,
  summary: null,
  handle: null,
  call: null,
  answer: null,
  sent: null,
  command: null,
  immediate: null,
  timeout: null,
  body: null,
  usage: null,
  picked: null,
  charged: null,
  headers: null,
  chunk: null,
  resource: null,
  tick: null,
  upstreamRequest: null,
  writev: null,
  records: null,
}

interface Kept {
  /** Fastify's request and reply, and the summary of the last request handled (../app.ts's route). */
  request: FastifyRequest | null
  reply: FastifyReply | null
  summary: object | null
  /**
   * The kept request's connection's TCP handle (Node's socket drops it when the connection closes): once every client
   * has closed its connection no other lives, and the socket code that reads, writes and ends through it embeds its
   * hidden class (onStreamRead, Socket._read, writevGeneric, Socket._destroy…).
   */
  handle: object | null
  /** The last upstream call that completed (its UpstreamBody with it) and its Answer (./upstream.ts). */
  call: object | null
  answer: object | null
  /** The last SentOnce once it handed its bytes over (./upstream.ts). */
  sent: object | null
  /**
   * The last Redis script command answered (../budget/redis/script-command.ts), replaced at `blankKept` by a blank
   * copy (its keys, arguments and reply context hold a request's ids and, for a reserve, its input).
   */
  command: BlankSource | null
  /** Node's timer objects, one of each made just before each release (`blankKept`): run or cleared, they hold nothing. */
  immediate: object | null
  timeout: object | null
  /**
   * A blank copy of the last small request body read whole (./request-body.ts), made at `blankKept`: its parsed
   * objects' hidden classes with every string empty, every number 0 or 0.5, each array's elements one of each shape.
   */
  body: object | null
  /** The last usage read from a whole answer (token counts only) and the object it was charged through (./forward.ts). */
  usage: object | null
  charged: object | null
  /** A blank copy of the last answer's members usage was read from (./forward.ts), made at `blankKept`. */
  picked: object | null
  /** The last upstream request's headers (./upstream.ts), copied with every value empty at `blankKept`. */
  headers: object | null
  /**
   * A Buffer made in C++, as a socket's reads are: Node gives one Uint8Array's map another prototype, a transition its
   * map holds weakly, so the map dies with the last such Buffer. Made at `blankKept` (a serialized 0: no client data).
   */
  chunk: Buffer | null
  /** An AsyncResource (Fastify makes one a request) and a process.nextTick entry, made at `blankKept`: they hold a no-op. */
  resource: object | null
  tick: object | null
  /** A blank copy of undici's Request of the last upstream call (./keep-undici-request.ts), made at `blankKept`. */
  upstreamRequest: object | null
  /** Node's writev array (./keep-node-write.ts), made at the first `blankKept`. */
  writev: object | null
  /**
   * Blank examples of the Redis store's per-call records (../budget/redis/store-records.ts), made anew at each
   * `blankKept` by the store that registered them (`keepRecords`): one set, replaced.
   */
  records: object | null
}

/** A live example until `blankKept` makes its blank copy (the example itself is let go then). */
interface BlankSource {
  blankCopy(): object
}

/** A maker of blank examples registered once; null: none to make yet. */
interface RecordsSource {
  blankCopy(): object | null
}

/** Whether examples are kept: only while the idle release runs (off, nothing would blank them). */
let keeping = false
const IDLE = { count: 0 }
/** The requests in progress (./inflight.ts): an example is kept only when they are few. */
let load: { readonly count: number } = IDLE
/**
 * Under a load that never falls to one request in flight, one call, SentOnce and command in SAMPLE + 1 is kept all
 * the same: a quiet period that follows requests that always overlapped finds examples of the maps in use, not of
 * the first requests' (a field generalized since deprecates a map the optimized code no longer embeds).
 */
const SAMPLE = 1023
/**
 * Each kind's own count (one shared would keep the same kind each time when a request makes a power of two), wrapped
 * (a count past a small integer would be a heap number).
 */
let calls = 0
let sents = 0
let commands = 0
let bodies = 0
let usages = 0
let headerSets = 0
let pickings = 0
let undiciCreations = 0
/** undici's last Request, copied blank at `blankKept`: watched with at most its own request in flight, or as a sample. */
const undiciRequest = createUndiciRequestKeeper()
const wantUndiciRequest = (): boolean => keeping && (load.count <= 1 || (undiciCreations = (undiciCreations + 1) & SAMPLE) === 0)
/** The body `blankKept` copies; it holds the client's text until then. */
let bodySource: BlankSource | null = null
/** The upstream headers `blankKept` copies; they hold the provider credential until then. */
let headersSource: Record<string, string> | null = null
/** The answer's members `blankKept` copies; they hold what the provider answered until then. */
let pickedSource: object | null = null
/** What makes the Redis store's blank records (../budget/redis/store.ts registers it as it loads). */
let recordsSource: RecordsSource | null = null

/**
 * Turns keeping on or off; `inflight` is what gates it (none: always idle). The first call (the server's, before any
 * request) also destroys one socket as undici ends an idle connection (./keep-undici-request.ts's destroyOneSocket).
 */
export function keepShapes(on: boolean, inflight: { readonly count: number } = IDLE): void {
  destroyOneSocket()
  keeping = on
  load = inflight
  undiciRequest.watch(on, wantUndiciRequest)
  if (!on) {
    kept.request = null
    kept.reply = null
    kept.summary = null
    kept.handle = null
    kept.call = null
    kept.answer = null
    kept.sent = null
    kept.command = null
    kept.immediate = null
    kept.timeout = null
    kept.body = null
    kept.usage = null
    kept.picked = null
    kept.charged = null
    kept.headers = null
    kept.chunk = null
    kept.resource = null
    kept.tick = null
    kept.upstreamRequest = null
    kept.writev = null
    kept.records = null
    bodySource = null
    headersSource = null
    pickedSource = null
  }
}

/** Registers what makes the store's blank records at each `blankKept` (null: none); the last registered is used. */
export function keepRecords(source: RecordsSource | null): void {
  recordsSource = source
}

/**
 * The pipeline is done with `request` (its body already let go, ./inflight.ts told): kept when it was the last in flight,
 * as the last request before a quiet period always is. What its URL carried (a key or session in the path, a `?key=`)
 * is blanked at `blankKept` with the rest. Not kept: an HTTP/2 one (its headers cannot be swapped), nor one the key
 * gate did not accept (its URL was not read as a target, so its parts are not known).
 */
export function keepRequest(request: FastifyRequest, reply: FastifyReply, summary: object): void {
  if (!keeping || load.count !== 0 || request.body !== undefined || request.raw.httpVersionMajor !== 1 || request.loopersKey === null) return
  kept.request = request
  kept.reply = reply
  kept.summary = summary
  // Taken while its connection may be open (a closed socket has none); it holds none open, and a closed one is an object.
  kept.handle = (request.raw.socket as unknown as { _handle?: object | null } | null)?._handle ?? kept.handle
}

// An upstream call, SentOnce or script command is kept with at most its own request in flight, or as a sample.
export function keepCall(call: object, answer: object | null): void {
  if (!keeping || (load.count > 1 && (calls = (calls + 1) & SAMPLE) !== 0)) return
  kept.call = call
  kept.answer = answer
}

export function keepSent(sent: object): void {
  if (keeping && (load.count <= 1 || (sents = (sents + 1) & SAMPLE) === 0)) kept.sent = sent
}

export function keepCommand(command: BlankSource): void {
  if (keeping && (load.count <= 1 || (commands = (commands + 1) & SAMPLE) === 0)) kept.command = command
}

/** A small body read whole, copied blank at `blankKept`: kept with at most its own request in flight, or as a sample. */
export function keepBody(body: BlankSource): void {
  if (keeping && (load.count <= 1 || (bodies = (bodies + 1) & SAMPLE) === 0)) bodySource = body
}

/** Usage read from a whole answer: its counts are kept, with the object a charge spreads it into made at `blankKept`. */
export function keepUsage(usage: object | null): void {
  if (usage !== null && keeping && (load.count <= 1 || (usages = (usages + 1) & SAMPLE) === 0)) kept.usage = usage
}

/**
 * `json`, the members of a whole answer usage is read from (../http/json-pick.ts), given back: copied blank at
 * `blankKept` with at most its own request in flight, or as a sample.
 */
export function keepPicked(json: unknown): unknown {
  if (typeof json === 'object' && json !== null && keeping && (load.count <= 1 || (pickings = (pickings + 1) & SAMPLE) === 0)) pickedSource = json
  return json
}

/**
 * The headers of a request about to go upstream, copied with every value empty at `blankKept` (they hold its
 * credential until then): nothing is allocated on the request's path.
 */
export function keepHeaders(headers: Record<string, string>): void {
  if (keeping && (load.count <= 1 || (headerSets = (headerSets + 1) & SAMPLE) === 0)) headersSource = headers
}

/**
 * Lets go of what the kept request carried from its client: its header values (its keys) and URL. Its headers object
 * is swapped for one of the same hidden class with empty values (blanking them in place would change the fields'
 * constness, itself a deoptimization); the fields swapped are ones Node writes more than once. Also makes the kept
 * body's and upstream headers' blank copies (letting the originals go), the charge's object, and the kept timer,
 * Buffer, AsyncResource and tick entry. Run while nothing is in flight, before a release.
 */
export function blankKept(): void {
  if (!keeping) return
  const timeout = setTimeout(noop, 0)
  clearTimeout(timeout)
  kept.timeout = timeout
  kept.immediate = setImmediate(noop)
  kept.chunk ??= serialize(0)
  try {
    // Its body is the kept Buffer: one made in C++, as an HTTP/1 parser's chunk, the body of a small request.
    if (headersSource !== null) kept.upstreamRequest = undiciRequest.blankCopy(kept.chunk, blankHeadersKeepingRead(headersSource)) ?? kept.upstreamRequest
  } catch {
    // A request undici's constructor refuses copied blank: none.
  }
  kept.writev ??= createWritevExample()
  // The command's blank copy, and the records' anew: each replaces the one before (a set of one each).
  if (kept.command !== null) kept.command = kept.command.blankCopy() as BlankSource
  if (recordsSource !== null) kept.records = recordsSource.blankCopy() ?? kept.records
  kept.resource = new AsyncResource('keep-shapes')
  // Queued through the release; its callback then keeps it (the resource a nextTick callback runs in is its entry).
  process.nextTick(keepTick)
  if (bodySource !== null) {
    const source = bodySource
    bodySource = null
    try {
      kept.body = source.blankCopy()
    } catch {
      // Nested past the stack's depth: no copy.
    }
  }
  if (headersSource !== null) {
    kept.headers = sameShape(headersSource)
    headersSource = null
  }
  if (pickedSource !== null) {
    const source = pickedSource
    pickedSource = null
    try {
      kept.picked = blankMembers(source)
    } catch {
      // Nested past the stack's depth: no copy.
    }
  }
  // As ./forward.ts charges a whole answer: the usage's counts, the plan's input where it has none.
  if (kept.usage !== null) kept.charged = withPlannedInput(kept.usage, 0)
  const request = kept.request
  if (request === null) return
  try {
    const raw = request.raw
    raw.headers = sameShape(raw.headers)
    raw.rawHeaders = []
    raw.url = ''
    // The URL's parts as Fastify and the key gate parsed them: a `?key=`, a path key or session, the provider's path.
    blankStrings(request.query as Record<string, unknown>)
    const entry = request.loopersKey
    if (entry === null) return
    request.loopersKey = blankEntry(entry)
    // Fastify's params (the path after the first slash) written once: blanking them deoptimizes find-my-way's `find`,
    // so only a path that carried a key or session is.
    if (entry.target.pathKey !== null || entry.target.pathSession !== null) blankStrings(request.params as Record<string, unknown>)
  } catch {
    // Not a request these fields can be swapped on: it is not kept.
    kept.request = null
    kept.reply = null
  }
}

/** As ../http/json-pick.ts builds its picked object: an empty one, then each member (here `blankJson`'s) by key. */
function blankMembers(source: object): object {
  const copy: Record<string, unknown> = {}
  for (const name in source) copy[name] = blankJson((source as Record<string, unknown>)[name])
  return copy
}

/** An object with `values`' keys in their order, each an empty string: made like Node makes a headers object. */
function sameShape(values: Record<string, unknown>): Record<string, string> {
  const copy: Record<string, string> = {}
  for (const name in values) copy[name] = ''
  return copy
}

/**
 * Empties in place each string `values` holds (a member, or an element of a member's array): the same object and
 * hidden class, its fields' representations unchanged. Throws on any other value: such a request is not kept.
 */
function blankStrings(values: Record<string, unknown> | null | undefined): void {
  if (values === null || values === undefined) return
  for (const name in values) {
    const value = values[name]
    if (typeof value === 'string') values[name] = ''
    else if (Array.isArray(value) && value.every((element) => typeof element === 'string')) value.fill('')
    else throw new TypeError('not a string')
  }
}

/** A key gate's entry (./key-gate.ts) of the same hidden classes as `entry`, with no key hash, key, session or URL. */
function blankEntry(entry: GateEntry): GateEntry {
  const { pathKey, pathSession, provider } = entry.target
  const session = pathSession === null ? null : { id: '', budget: pathSession.budget === null ? null : '', maxSteps: pathSession.maxSteps === null ? null : '' }
  return { keyHash: '', target: { pathKey: pathKey === null ? null : '', pathSession: session, provider, path: '', query: '' } }
}

const noop = (): void => undefined

function keepTick(): void {
  if (keeping) kept.tick = executionAsyncResource()
}

/**
 * `value` parsed anew from JSON text of its structure and none of its content (`blankText`): JSON.parse walks the same
 * hidden-class transitions it took for `value`, so the copy holds them without holding what the client sent.
 */
export function blankJson(value: unknown): unknown {
  return JSON.parse(blankText(value))
}

/**
 * JSON text of `value`'s structure: strings empty, numbers 0 where V8 holds a small integer and 0.5 where a heap number
 * (a field's representation, part of its hidden class), each array's distinct blank elements once (the same elements
 * kind). Keys are kept: they are the hidden classes.
 */
export function blankText(value: unknown): string {
  if (typeof value === 'string') return '""'
  if (typeof value === 'number') return Number.isInteger(value) && value >= SMI_MIN && value <= SMI_MAX && !Object.is(value, -0) ? '0' : '0.5'
  if (typeof value !== 'object' || value === null) return value === true ? 'true' : value === false ? 'false' : 'null'
  if (Array.isArray(value)) {
    const seen = new Set<string>()
    for (const element of value) seen.add(blankText(element))
    return `[${[...seen].join(',')}]`
  }
  let text = ''
  for (const key in value) text += `${text === '' ? '' : ','}${JSON.stringify(key)}:${blankText((value as Record<string, unknown>)[key])}`
  return `{${text}}`
}

/** V8's small integers on 64-bit Node without pointer compression (its official builds). */
const SMI_MIN = -(2 ** 31)
const SMI_MAX = 2 ** 31 - 1
