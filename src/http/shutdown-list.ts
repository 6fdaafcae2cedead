/**
 * What the server's shutdown stops at once: every open request and stream joins a list, and one listener on the
 * shutdown signal stops them all (an AbortSignal listener each would be added and removed per request, scanning
 * the signal's listeners). A linked list rather than a Set: a long-lived Set reallocates its table in the old
 * generation as items come and go, garbage only a full collection reclaims.
 */
export class ShutdownList<T> {
  private newest: ShutdownEntry<T> | null = null

  /** `stop` is called once for each item listed when `signal` fires. */
  constructor(
    private readonly signal: AbortSignal,
    private readonly stop: (item: T) => void,
  ) {
    signal.addEventListener('abort', () => this.stopAll(), { once: true })
  }

  /** Whether the shutdown came: an item listed now would never be stopped. */
  get stopped(): boolean {
    return this.signal.aborted
  }

  /** Lists `item` until `remove` is called with what this returns. */
  add(item: T): ShutdownEntry<T> {
    const entry: ShutdownEntry<T> = { item, older: this.newest, newer: null }
    if (this.newest !== null) this.newest.newer = entry
    this.newest = entry
    return entry
  }

  /** Takes an entry out of the list, and its links out of it (a promoted entry keeps no younger one alive). */
  remove(entry: ShutdownEntry<T>): void {
    if (entry.newer === null) {
      // The newest, or already removed (then it is not the list's head either).
      if (this.newest === entry) this.newest = entry.older
    } else entry.newer.older = entry.older
    if (entry.older !== null) entry.older.newer = entry.newer
    entry.older = null
    entry.newer = null
  }

  private stopAll(): void {
    // Listed first: stopping an item may remove its entry at once.
    const items: T[] = []
    for (let entry = this.newest; entry !== null; entry = entry.older) items.push(entry.item)
    for (const item of items) this.stop(item)
  }
}

/** One listed item, linked to the items listed just before and after it while it is listed. */
export interface ShutdownEntry<T> {
  readonly item: T
  older: ShutdownEntry<T> | null
  newer: ShutdownEntry<T> | null
}
