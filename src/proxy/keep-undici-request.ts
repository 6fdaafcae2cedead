import { channel, subscribe, unsubscribe } from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import { Socket } from 'node:net'

/**
 * A blank example of undici's Request, the object its dispatch API makes for each upstream call, for ./keep-shapes.ts.
 * No Request outlives its call (./upstream.ts lets go of it: it holds the provider credential and the body), so a
 * quiet period's full collection drops its hidden classes, and with them the optimized code of undici's client
 * (its Request's constructor and handlers, writeH1, the HTTP parser's callbacks: about half of the functions a quiet
 * period deoptimized; bench/idle-retier.mjs --names). The last call's Request is seen on undici's
 * `undici:request:create` channel, subscribed only while examples are kept, and `blankCopy` builds a new one through
 * the same constructor with options of the same hidden class and none of its data: path `/`, the last upstream
 * headers with every value empty but those undici reads into fields (host, content-length, content-type), a body of
 * `blankBody`'s bytes.
 */
export interface UndiciRequestKeeper {
  /** Starts (or stops) watching for undici's requests; `wanted` says whether the one just made is to be copied. */
  watch(on: boolean, wanted?: () => boolean): void
  /**
   * A blank copy of the last request wanted, sent `blankHeaders` (its upstream headers' keys: see `blankHeadersKeepingRead`)
   * and `blankBody` (null: none since the last copy, or one not copied).
   */
  blankCopy(blankBody: Buffer, blankHeaders: Record<string, string>): object | null
}

/** The fields of undici's Request (undici/lib/core/request.js) a copy is made from. */
interface UndiciRequest {
  origin: string
  method: string
  body: unknown
  upgrade: string | null
}

const requireHere = createRequire(import.meta.url)
/** The class undici's Agent constructs (the same module instance: a copy made through another would have other maps). */
const Request = requireHere('undici/lib/core/request.js') as new (origin: string, options: object, handler: object) => object
const CREATED = 'undici:request:create'
/** Subscribers of CREATED (Node's Channel keeps them in `_subscribers` while it has any); -1: not known. */
const subscribers = (): number => {
  const list = (channel(CREATED) as unknown as { _subscribers?: unknown })._subscribers
  return Array.isArray(list) ? list.length : -1
}
/** Headers whose value undici reads into a field of its own (a number, a server name): an empty one would fail or change it. */
const READ_HEADERS = new Set(['host', 'content-length', 'content-type'])

/** `headers`' keys in their order (built as ./keep-shapes.ts's blank headers are), each value empty but READ_HEADERS'. */
export function blankHeadersKeepingRead(headers: Record<string, string>): Record<string, string> {
  const copy: Record<string, string> = {}
  for (const name in headers) copy[name] = READ_HEADERS.has(name.toLowerCase()) ? headers[name]! : ''
  return copy
}

export function createUndiciRequestKeeper(): UndiciRequestKeeper {
  let source: UndiciRequest | null = null
  let wanted: () => boolean = () => true
  let copying = false
  const onCreated = (message: unknown): void => {
    const { request } = message as { request: unknown }
    // Node's own fetch publishes its bundled undici's requests here too: another class.
    if (!copying && request instanceof Request && wanted()) source = request as UndiciRequest
  }
  let watching = false
  return {
    watch(on, isWanted = () => true) {
      wanted = isWanted
      if (on && !watching) subscribe(CREATED, onCreated)
      if (!on && watching) unsubscribe(CREATED, onCreated)
      watching = on
      if (!on) source = null
    },
    blankCopy(blankBody, blankHeaders) {
      const request = source
      source = null
      if (!watching) return null
      // Only a Buffer body (or none) is copied: a stream body adds fields of its own.
      if (request === null || (request.body !== null && !Buffer.isBuffer(request.body)) || request.upgrade !== null) return null
      // Another subscriber (tracing) would see the copy as a request made: none is made then. Counted, not tried by
      // unsubscribing: a channel's last unsubscribe swaps its prototype, deoptimizing the code that checks it.
      if (subscribers() !== 1) return null
      // The module's own symbol for its handler, found by its description.
      const handler = Object.getOwnPropertySymbols(request).find((symbol) => symbol.description === 'handler')
      if (handler === undefined) return null
      copying = true
      try {
        // Options of the keys, order and kinds of ./upstream.ts's dispatch options: the constructor's optimized code
        // checks their hidden class (another one deoptimized it at each release).
        const options = { origin: request.origin, path: '/', method: request.method, headers: blankHeaders, body: request.body === null ? null : blankBody }
        return new Request(request.origin, options, (request as unknown as Record<symbol, object>)[handler]!)
      } finally {
        copying = false
      }
    },
  }
}

const undiciUtil = requireHere('undici/lib/core/util.js') as { destroy(stream: unknown, err: Error): void }
const { InformationalError } = requireHere('undici/lib/core/errors.js') as { InformationalError: new (message: string) => Error }
let destroyedOne = false

/**
 * Destroys one unconnected socket with an error through undici's own `destroy`, as undici ends an idle upstream
 * connection at its keep-alive timeout; once a process, before any request. The process's first such destroy was
 * followed, once a run, by a quiet period that threw ~40 of Node's and undici's socket and parser functions for
 * "dependent prototype chain changed": done first, it changes what it changes before any code is optimized.
 */
export function destroyOneSocket(): void {
  if (destroyedOne) return
  destroyedOne = true
  const socket = new Socket()
  socket.on('error', () => undefined)
  undiciUtil.destroy(socket, new InformationalError('socket idle timeout'))
}
