/**
 * One share of big-body work per turn of the event loop, for all requests together. Copying a body into
 * fresh memory, hashing, encoding and sending it cost time in proportion to their bytes (on a virtual
 * machine the page faults of fresh memory cost more than the copy); slicing each request's work bounds
 * one request, and this share bounds them all: eight 10 MiB uploads at once do no more per turn than one.
 * Work waits for a turn with room, first come first served; small requests never take part.
 */

/** Bytes of big-body work all requests together do in one turn of the event loop. */
export const TURN_SHARE_BYTES = 1 << 17

/** One slice of work (`take`): a quarter of the share, so several requests make progress in a turn. */
export const SHARE_SLICE_BYTES = 1 << 15

let left = TURN_SHARE_BYTES
let refill: NodeJS.Immediate | null = null
const waiting: Array<() => void> = []

function scheduleRefill(): void {
  if (refill === null) refill = setImmediate(nextTurn)
}

function nextTurn(): void {
  refill = null
  left = TURN_SHARE_BYTES
  while (waiting.length > 0 && left >= SHARE_SLICE_BYTES) {
    left -= SHARE_SLICE_BYTES
    waiting.shift()!()
  }
  if (waiting.length > 0 || left < TURN_SHARE_BYTES) scheduleRefill()
}

/**
 * Resolves once one slice (at most SHARE_SLICE_BYTES of work) is reserved for the caller in the current
 * turn: at once when this turn's share has room, else in a later turn, in order of asking.
 */
export function take(): Promise<void> {
  if (waiting.length === 0 && left >= SHARE_SLICE_BYTES) {
    left -= SHARE_SLICE_BYTES
    scheduleRefill()
    return Promise.resolve()
  }
  return new Promise((resolve) => {
    waiting.push(resolve)
    scheduleRefill()
  })
}

/** Records `bytes` of big-body work already done in this turn (data that arrived, say). */
export function spend(bytes: number): void {
  left -= bytes
  scheduleRefill()
}

/** Whether this turn's share has room left and nobody waits for it. */
export function hasRoom(): boolean {
  return left > 0 && waiting.length === 0
}
