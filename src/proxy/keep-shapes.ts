import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * One example of each per-request object, kept through the idle release. V8 holds an object type's hidden classes
 * (maps) only while an instance lives, optimized code holds them weakly, and a memory-reducing collection drops
 * every map no live object uses: without a live example the request path's optimized code is thrown away at each
 * quiet period and the next few thousand requests run slower while it is rebuilt (bench/idle-retier.mjs).
 * An example matters only through a quiet period, so one is kept only while the proxy is otherwise idle (`keepShapes`'
 * inflight): under load nothing is stored (a young object stored into this long-lived one costs a write barrier and
 * drags its graph through the next scavenges). None holds a
 * body (the pipeline let go of it; an UpstreamCall its undici request), a socket open (a closed one is only an
 * object) or a reservation (settled); what a client sent is let go before each release (`blankKept`).
 */
export const kept: Kept = { request: null, reply: null, summary: null, call: null, answer: null, sent: null, command: null, immediate: null, timeout: null }

interface Kept {
  /** Fastify's request and reply, and the summary of the last request handled (../app.ts's route). */
  request: FastifyRequest | null
  reply: FastifyReply | null
  summary: object | null
  /** The last upstream call that completed (its UpstreamBody with it) and its Answer (./upstream.ts). */
  call: object | null
  answer: object | null
  /** The last SentOnce once it handed its bytes over (./upstream.ts). */
  sent: object | null
  /** The last Redis script command answered (../budget/redis/script-command.ts). */
  command: object | null
  /** Node's timer objects, one of each made just before each release (`blankKept`): run or cleared, they hold nothing. */
  immediate: object | null
  timeout: object | null
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

/** Turns keeping on or off; `inflight` is what gates it (none: always idle). */
export function keepShapes(on: boolean, inflight: { readonly count: number } = IDLE): void {
  keeping = on
  load = inflight
  if (!on) {
    kept.request = null
    kept.reply = null
    kept.summary = null
    kept.call = null
    kept.answer = null
    kept.sent = null
    kept.command = null
    kept.immediate = null
    kept.timeout = null
  }
}

/**
 * The pipeline is done with `request` (its body already let go, ./inflight.ts told): kept when it was the last in flight,
 * as the last request before a quiet period always is. One whose path or query carries client data (a key,
 * a session) is not kept: its strings would have to be blanked, and writing a field written once deoptimizes the code
 * that read it as constant. Nor is an HTTP/2 one, whose headers cannot be swapped.
 */
export function keepRequest(request: FastifyRequest, reply: FastifyReply, summary: object): void {
  if (!keeping || load.count !== 0 || request.body !== undefined || request.raw.httpVersionMajor !== 1) return
  const target = request.loopersKey?.target
  if (target === undefined || target.pathKey !== null || target.pathSession !== null || target.query !== '') return
  kept.request = request
  kept.reply = reply
  kept.summary = summary
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

export function keepCommand(command: object): void {
  if (keeping && (load.count <= 1 || (commands = (commands + 1) & SAMPLE) === 0)) kept.command = command
}

/**
 * Lets go of what the kept request carried from its client: its header values (its keys) and URL. Its headers object
 * is swapped for one of the same hidden class with empty values (blanking them in place would change the fields'
 * constness, itself a deoptimization); the fields swapped are ones Node writes more than once. Also makes the kept
 * timer objects. Run while nothing is in flight, before a release.
 */
export function blankKept(): void {
  if (!keeping) return
  const timeout = setTimeout(noop, 0)
  clearTimeout(timeout)
  kept.timeout = timeout
  kept.immediate = setImmediate(noop)
  const raw = kept.request?.raw
  if (raw === undefined) return
  try {
    raw.headers = sameShape(raw.headers)
    raw.rawHeaders = []
    raw.url = ''
  } catch {
    // Not a request these fields can be swapped on: it is not kept.
    kept.request = null
    kept.reply = null
  }
}

/** An object with `values`' keys in their order, each an empty string: made like Node makes a headers object. */
function sameShape(values: Record<string, unknown>): Record<string, string> {
  const copy: Record<string, string> = {}
  for (const name in values) copy[name] = ''
  return copy
}

const noop = (): void => undefined
