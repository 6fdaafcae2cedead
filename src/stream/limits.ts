import type { StreamParser } from '../providers/types.js'

/**
 * What a malicious or broken upstream can make the proxy hold: one unterminated event of a stream, or one
 * non-streamed body. Past either the answer is ended like an upstream failure and the whole hold is charged.
 */

/** Bytes of one streamed event (SSE event, JSON-array element, event-stream message: AWS's own limit). */
export const MAX_EVENT_BYTES = 16 * 1024 * 1024
/** Bytes of one non-streamed upstream body. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024

/** Thrown by a framer or body reader past its limit; the stream or response is then treated as broken. */
export class UpstreamTooLargeError extends Error {
  readonly limitBytes: number
  constructor(what: string, limitBytes: number) {
    super(`${what} above the ${limitBytes}-byte limit`)
    this.name = 'UpstreamTooLargeError'
    this.limitBytes = limitBytes
  }
}

/** A stream parser that remembers whether its framer gave up on an event past the limit. */
export interface GuardedParser {
  parser: StreamParser
  /** True once an event went past the limit: the provider may have billed far more than was seen. */
  overflowed(): boolean
}

/** Wraps `parser` so an UpstreamTooLargeError its framer throws is remembered (and still thrown). */
export function guardEventLimit(parser: StreamParser): GuardedParser {
  let overflowed = false
  const note = (error: unknown): never => {
    if (error instanceof UpstreamTooLargeError) overflowed = true
    throw error
  }
  const frames = parser.frames?.bind(parser)
  return {
    parser: {
      ...parser,
      push: (chunk) => {
        try {
          return parser.push(chunk)
        } catch (error) {
          return note(error)
        }
      },
      ...(frames === undefined
        ? {}
        : {
            *frames(chunk: Buffer) {
              try {
                yield* frames(chunk)
              } catch (error) {
                note(error)
              }
            },
          }),
    },
    overflowed: () => overflowed,
  }
}
