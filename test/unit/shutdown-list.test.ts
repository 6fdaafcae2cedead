import { describe, expect, it } from 'vitest'
import { ShutdownList } from '../../src/http/shutdown-list.js'

describe('ShutdownList', () => {
  it('stops every item still listed when the signal fires, once, and none removed before', () => {
    const shutdown = new AbortController()
    const stopped: string[] = []
    const list = new ShutdownList<string>(shutdown.signal, (item) => stopped.push(item))
    const items = ['oldest', 'middle', 'newest', 'gone']
    const slots = items.map((item) => list.add(item))
    // Taken out: the last listed, then one between others.
    list.remove(slots[3]!, 'gone')
    list.remove(slots[1]!, 'middle')
    expect(list.stopped).toBe(false)
    expect(list.size).toBe(2)
    shutdown.abort()
    expect(list.stopped).toBe(true)
    expect(stopped.sort()).toEqual(['newest', 'oldest'])
    shutdown.abort()
    expect(stopped).toHaveLength(2)
  })

  it('keeps the rest when an item is removed twice, and when stopping an item removes it', () => {
    const shutdown = new AbortController()
    const stopped: number[] = []
    const slots: number[] = []
    // Stopping an item removes it at once, as a request's close does.
    const list = new ShutdownList<number>(shutdown.signal, (item) => {
      stopped.push(item)
      list.remove(slots[item]!, item)
    })
    for (let i = 0; i < 4; i++) slots.push(list.add(i))
    list.remove(slots[2]!, 2)
    list.remove(slots[2]!, 2)
    expect(list.size).toBe(3)
    shutdown.abort()
    expect(stopped.sort()).toEqual([0, 1, 3])
    expect(list.size).toBe(0)
  })

  it('leaves another item listed when a removed item is removed again after its slot was taken', () => {
    const shutdown = new AbortController()
    const stopped: string[] = []
    const list = new ShutdownList<string>(shutdown.signal, (item) => stopped.push(item))
    const first = list.add('first')
    list.remove(first, 'first')
    const second = list.add('second')
    // The freed slot is the next one given.
    expect(second).toBe(first)
    list.remove(first, 'first')
    expect(list.size).toBe(1)
    shutdown.abort()
    expect(stopped).toEqual(['second'])
  })

  it('holds no item after each has been removed, in any order, and reuses slots rather than growing', () => {
    const shutdown = new AbortController()
    const stopped: number[] = []
    const list = new ShutdownList<number>(shutdown.signal, (item) => stopped.push(item))
    // A fixed shuffle of 0..39: a deterministic "any order", interleaved with new items joining.
    let seed = 7
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648)
    let open: { slot: number; item: number }[] = []
    let item = 0
    let highestSlot = -1
    for (let round = 0; round < 50; round++) {
      while (open.length < 40) {
        const slot = list.add(item)
        highestSlot = Math.max(highestSlot, slot)
        open.push({ slot, item: item++ })
      }
      expect(list.size).toBe(40)
      // Remove a random half (more than 16: the free stack grows), oldest, newest and middle alike.
      const leaving = 20 + (next() % 20)
      for (let i = 0; i < leaving; i++) {
        const at = next() % open.length
        const { slot, item: gone } = open[at]!
        list.remove(slot, gone)
        open = [...open.slice(0, at), ...open.slice(at + 1)]
      }
      expect(list.size).toBe(open.length)
    }
    // Never more slots than items listed at once.
    expect(highestSlot).toBeLessThan(40)
    for (const { slot, item: gone } of [...open].reverse()) list.remove(slot, gone)
    expect(list.size).toBe(0)
    shutdown.abort()
    expect(stopped).toEqual([])
  })

  it('stops items listed after others left, each once', () => {
    const shutdown = new AbortController()
    const stopped: string[] = []
    const list = new ShutdownList<string>(shutdown.signal, (item) => stopped.push(item))
    const a = list.add('a')
    const b = list.add('b')
    list.remove(a, 'a')
    list.remove(b, 'b')
    list.add('c')
    list.add('d')
    list.add('e')
    shutdown.abort()
    expect(stopped.sort()).toEqual(['c', 'd', 'e'])
  })
})
