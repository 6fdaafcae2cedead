import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'

/**
 * An example of the array Node's Writable hands its buffered writes to `_writev` in (its clearBuffer; a socket's
 * writevGeneric reads it): a packed array of objects with an `allBuffers` member added. That member gives the array a
 * hidden class of its own which no such array outlives its write, so a quiet period's full collection dropped it and
 * threw away the optimized code of clearBuffer, doWrite, Socket's `_writev` and `_writeGeneric`, and writevGeneric
 * (bench/thread-work.mjs --lines), Node's write path for undici's and ioredis' corked writes. Made along the same
 * transitions (an array literal of an object, emptied, `allBuffers` added), it holds nothing.
 */
export function createWritevExample(): object {
  const chunks: unknown[] & { allBuffers?: boolean } = [{}]
  // The elements kind stays packed objects (Writable's buffered entries); the example keeps no element.
  chunks.pop()
  chunks.allBuffers = true
  return chunks
}

/**
 * The last socket undici's client connected, for ./keep-shapes.ts to keep once it is closed. undici adds members of
 * its own to each socket it connects (its client, parser, counters), so its sockets have hidden classes no other socket
 * has; a quiet period outlasts its keep-alive, every upstream socket closes, and the next full collection dropped
 * those classes with the optimized code of Socket's `_writeGeneric`, writevGeneric, onStreamRead and Socket's `_read`
 * (bench/thread-work.mjs --lines). A closed socket is an object: undici has let go of its parser, and the socket of
 * what it wrote and read.
 */
export interface UpstreamSocketKeeper {
  /** Starts (or stops, letting go) watching undici's `undici:client:connected` channel. */
  watch(on: boolean): void
  /** The last socket connected if it is closed; null: none, or still open (its classes live with it). */
  closed(): object | null
}

const requireHere = createRequire(import.meta.url)
/** The class undici's Agent connects through (the same module instance: Node's bundled undici publishes here too). */
const Client = requireHere('undici/lib/dispatcher/client.js') as new (...args: never[]) => object
const CONNECTED = 'undici:client:connected'

export function createUpstreamSocketKeeper(): UpstreamSocketKeeper {
  let last: Socket | null = null
  const onConnected = (message: unknown): void => {
    const { socket } = message as { socket: Socket }
    const client = Object.getOwnPropertySymbols(socket).find((symbol) => symbol.description === 'client')
    if (client !== undefined && (socket as unknown as Record<symbol, unknown>)[client] instanceof Client) last = socket
  }
  let watching = false
  return {
    watch(on) {
      if (on && !watching) subscribe(CONNECTED, onConnected)
      if (!on && watching) unsubscribe(CONNECTED, onConnected)
      watching = on
      if (!on) last = null
    },
    closed() {
      return last !== null && last.destroyed && last.closed ? last : null
    },
  }
}
