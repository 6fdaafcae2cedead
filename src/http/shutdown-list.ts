/**
 * What the server's shutdown stops at once: every open request and stream joins a list, and one listener on the
 * shutdown signal stops them all (an AbortSignal listener each would be added and removed per request, scanning
 * the signal's listeners). Items sit in the slots of one array, a slot freed when its item leaves and taken by the
 * next: listing an item allocates nothing. Not an entry object per item: one that lives exactly as long as a request
 * straddles scavenges, and V8 changes its allocation site's tenuring, throwing away every optimized function that
 * inlined it (bench/thread-work.mjs --lines). Not a Set: a long-lived Set reallocates its table in the old
 * generation as items come and go, garbage only a full collection reclaims.
 */
export class ShutdownList<T> {
  /** Each slot's item, null when free; grows only past the most items ever listed at once. */
  private readonly items: (T | null)[] = []
  /** The free slots, a stack of `free` of them (a typed array: popping an Array trims and regrows its store). */
  private freeSlots = new Int32Array(16)
  private free = 0

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

  /** How many items are listed now. */
  get size(): number {
    return this.items.length - this.free
  }

  /** Lists `item` until `remove` is called with the slot this returns and the item. */
  add(item: T): ShutdownSlot {
    if (this.free === 0) return this.items.push(item) - 1
    const slot = this.freeSlots[--this.free]!
    this.items[slot] = item
    return slot
  }

  /** Takes `item` out of `slot`; nothing when it left already (the slot free, or another item's since). */
  remove(slot: ShutdownSlot, item: T): void {
    if (this.items[slot] !== item) return
    this.items[slot] = null
    if (this.free === this.freeSlots.length) {
      const grown = new Int32Array(this.freeSlots.length * 2)
      grown.set(this.freeSlots)
      this.freeSlots = grown
    }
    this.freeSlots[this.free++] = slot
  }

  private stopAll(): void {
    // Listed first: stopping an item may remove it at once.
    const listed: T[] = []
    for (const item of this.items) if (item !== null) listed.push(item)
    for (const item of listed) this.stop(item)
  }
}

/** Where an item is listed: what `add` returns and `remove` takes. */
export type ShutdownSlot = number
