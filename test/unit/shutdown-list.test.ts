import { describe, expect, it } from 'vitest'
import { ShutdownList } from '../../src/http/shutdown-list.js'

describe('ShutdownList', () => {
  it('stops every item still listed when the signal fires, once, and none removed before', () => {
    const shutdown = new AbortController()
    const stopped: string[] = []
    const list = new ShutdownList<string>(shutdown.signal, (item) => stopped.push(item))
    const entries = ['oldest', 'middle', 'newest', 'gone'].map((item) => list.add(item))
    // Taken out: the middle one of a longer list, then the newest (the head) of it.
    list.remove(entries[3]!)
    list.remove(entries[1]!)
    expect(list.stopped).toBe(false)
    shutdown.abort()
    expect(list.stopped).toBe(true)
    expect(stopped.sort()).toEqual(['newest', 'oldest'])
    shutdown.abort()
    expect(stopped).toHaveLength(2)
  })

  it('keeps the rest when an entry is removed twice, and when stopping an item removes it', () => {
    const shutdown = new AbortController()
    const stopped: number[] = []
    const entries: ReturnType<ShutdownList<number>['add']>[] = []
    // Stopping an item removes its entry at once, as a request's close does.
    const list = new ShutdownList<number>(shutdown.signal, (item) => {
      stopped.push(item)
      list.remove(entries[item]!)
    })
    for (let i = 0; i < 4; i++) entries.push(list.add(i))
    list.remove(entries[2]!)
    list.remove(entries[2]!)
    shutdown.abort()
    expect(stopped.sort()).toEqual([0, 1, 3])
  })
})
