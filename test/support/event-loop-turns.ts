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
