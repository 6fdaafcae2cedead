/** Counts turns of the event loop from now until the returned function is called; it returns the count. */
export function countLoopTurns(): () => number {
  let turns = 0
  let stopped = false
  const turn = (): void => {
    turns++
    if (!stopped) setImmediate(turn)
  }
  setImmediate(turn)
  return () => {
    stopped = true
    return turns
  }
}

/**
 * Watches this thread's event loop from now until the returned function is called: the longest stretch of
 * the thread's own CPU time between two turns, and all CPU time it used. CPU time, not wall time, so a
 * loaded machine that deschedules the thread does not inflate it.
 */
export function watchCpuStretches(): () => { longestMs: number; totalMs: number } {
  const cpuMs = (): number => {
    const { user, system } = process.threadCpuUsage()
    return (user + system) / 1000
  }
  const started = cpuMs()
  let last = started
  let longest = 0
  const timer = setInterval(() => {
    const now = cpuMs()
    longest = Math.max(longest, now - last)
    last = now
  }, 1)
  return () => {
    clearInterval(timer)
    const now = cpuMs()
    return { longestMs: Math.max(longest, now - last), totalMs: now - started }
  }
}
