import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { mainDelta, mainThreadCounts } from '../../bench/thread-probe.mjs'

// Issue 12: bench/ab.mjs --threads splits the open loop's CPU a request into the main thread's user and system time
// and counts its wake-ups; a counter read from the wrong field would send the search for the gap the wrong way.
// The test process's own main thread (vitest's forks pool: a process, its test on the main thread) is the subject.

describe("the main thread's counters", () => {
  it('charge a busy loop in JavaScript to user time, not system time', () => {
    // The thread's own CPU clock (schedstat, ns), so a loaded host that gives it a core for less of the time waits longer.
    const cpuMs = () => Number(readFileSync(`/proc/${process.pid}/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
    const before = mainThreadCounts(process.pid)
    const from = cpuMs()
    const deadline = performance.now() + 10_000
    let spins = 0
    while (cpuMs() - from < 300 && performance.now() < deadline) for (let i = 0; i < 100_000; i++) spins = (spins + i) % 7919
    const used = mainDelta(before, mainThreadCounts(process.pid))
    expect(cpuMs() - from).toBeGreaterThanOrEqual(300)
    // 300 ms of the thread's CPU, sampled in 10 ms ticks; the reads of schedstat are the system time.
    expect(used['main-user-ms']).toBeGreaterThanOrEqual(150)
    expect(used['main-user-ms']).toBeGreaterThan(2 * used['main-sys-ms'])
  })

  it('count each sleep as a voluntary switch and a timeslice', () => {
    const cell = new Int32Array(new SharedArrayBuffer(4))
    const before = mainThreadCounts(process.pid)
    for (let i = 0; i < 20; i++) Atomics.wait(cell, 0, 0, 5)
    const used = mainDelta(before, mainThreadCounts(process.pid))
    expect(used['main-voluntary-switches']).toBeGreaterThanOrEqual(20)
    expect(used['main-timeslices']).toBeGreaterThanOrEqual(20)
    expect(used['main-involuntary-switches']).toBeGreaterThanOrEqual(0)
  })
})
