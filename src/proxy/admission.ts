/**
 * What one proxy process remembers to admit well near a limit: which keys were recently refused (their
 * requests are counted exactly before they reserve), and a per-key queue of requests refused only because
 * of other requests' holds, retried one at a time as holds are released here or after a short pause
 * (holds of other processes).
 */
import type { Refusal } from '../budget/types.js'

/** How long a refusal marks a key as near its limit. */
const TIGHT_FOR_MS = 60_000
/** Keys remembered at most (the oldest is forgotten first). */
const MAX_TIGHT_KEYS = 10_000
/** Longest a request waits for other requests' holds before it is refused (retryably). */
const HOLD_WAIT_MS = 3_000
/** Pause before retrying when no local release came: holds of other proxy processes. */
const POLL_MS = [20, 50, 100, 200] as const

/** True when the refusal is caused by what in-flight requests hold: without their holds, `minMicros` fits. */
export function blockedByHolds(refusal: Refusal, minMicros: number): boolean {
  const { limitMicros, spentMicros, heldMicros } = refusal
  if (limitMicros === undefined || spentMicros === undefined || heldMicros === undefined || heldMicros <= 0) return false
  return limitMicros - (spentMicros - heldMicros) >= minMicros
}

/** What settled spend leaves in the refusing window or session (holds not counted), in micro-USD. */
export function settledRoom(refusal: Refusal): number {
  const limit = refusal.limitMicros ?? 0
  const settled = (refusal.spentMicros ?? 0) - (refusal.heldMicros ?? 0)
  return Math.max(0, limit - settled)
}

interface Admission {
  /** The room settled spend left when the key was last refused, or null when it was not refused lately. */
  tightRoom(keyHash: string): number | null
  markTight(keyHash: string, roomMicros: number): void
  /**
   * Runs `attempt` for a request blocked by holds, in this key's queue: one request retries at a time,
   * when a hold of this key is released in this process or after a short pause, until it is admitted,
   * refused for settled spend, or `HOLD_WAIT_MS` passes. Resolves with the last attempt's result.
   */
  waitForHolds<T>(keyHash: string, attempt: () => Promise<T>, blocked: (result: T) => boolean): Promise<T>
  /** A request of this key released some of its hold (settled): the key's queue retries now. */
  released(keyHash: string): void
}

interface Queue {
  waiters: Array<() => void>
  busy: boolean
  wake: (() => void) | null
}

export function createAdmission(now: () => number = Date.now): Admission {
  const tight = new Map<string, { until: number; room: number }>()
  const queues = new Map<string, Queue>()

  function queueOf(keyHash: string): Queue {
    let queue = queues.get(keyHash)
    if (queue === undefined) {
      queue = { waiters: [], busy: false, wake: null }
      queues.set(keyHash, queue)
    }
    return queue
  }

  /** Waits until this request heads its key's queue. */
  function enter(queue: Queue): Promise<void> {
    if (!queue.busy) {
      queue.busy = true
      return Promise.resolve()
    }
    return new Promise((resolve) => queue.waiters.push(resolve))
  }

  function leave(keyHash: string, queue: Queue): void {
    const next = queue.waiters.shift()
    if (next !== undefined) next()
    else {
      queue.busy = false
      queues.delete(keyHash)
    }
  }

  /** Resolves after `ms`, or earlier when a hold of this key is released here. */
  function pause(queue: Queue, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        if (queue.wake === done) queue.wake = null
        resolve()
      }
      queue.wake = done
    })
  }

  return {
    tightRoom(keyHash) {
      const entry = tight.get(keyHash)
      if (entry === undefined) return null
      if (entry.until > now()) return entry.room
      tight.delete(keyHash)
      return null
    },
    markTight(keyHash, roomMicros) {
      tight.delete(keyHash)
      if (tight.size >= MAX_TIGHT_KEYS) tight.delete(tight.keys().next().value as string)
      tight.set(keyHash, { until: now() + TIGHT_FOR_MS, room: roomMicros })
    },
    async waitForHolds(keyHash, attempt, blocked) {
      const deadline = now() + HOLD_WAIT_MS
      const queue = queueOf(keyHash)
      await enter(queue)
      try {
        let result = await attempt()
        for (let tries = 0; blocked(result) && now() < deadline; tries++) {
          await pause(queue, Math.min(POLL_MS[Math.min(tries, POLL_MS.length - 1)] as number, Math.max(1, deadline - now())))
          result = await attempt()
        }
        return result
      } finally {
        leave(keyHash, queue)
      }
    },
    released(keyHash) {
      queues.get(keyHash)?.wake?.()
    },
  }
}
