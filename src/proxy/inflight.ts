/** Counts requests in progress so shutdown can wait until every one has settled. */
export interface Inflight {
  begin(): void
  end(): void
  readonly count: number
  /** Requests begun since start (never decreases): a quiet proxy is one whose `begun` stands still. */
  readonly begun: number
  /** Resolves when no request is in progress. */
  drained(): Promise<void>
}

export function createInflight(): Inflight {
  let count = 0
  let begun = 0
  let waiters: Array<() => void> = []
  return {
    begin() {
      count++
      begun++
    },
    end() {
      count--
      // Only with someone waiting: at a low rate most requests end alone, and each would make a new empty list.
      if (count === 0 && waiters.length > 0) {
        const ready = waiters
        waiters = []
        for (const resolve of ready) resolve()
      }
    },
    get count() {
      return count
    },
    get begun() {
      return begun
    },
    drained() {
      return count === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))
    },
  }
}
