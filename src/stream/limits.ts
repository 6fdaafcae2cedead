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
