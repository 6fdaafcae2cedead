/**
 * An example of the array Node's Writable hands its buffered writes to `_writev` in (its clearBuffer; a socket's
 * writevGeneric reads it): a packed array of objects with an `allBuffers` member added. That member gives the array a
 * hidden class of its own which no such array outlives its write, so a quiet period's full collection dropped it and
 * threw away the optimized code of clearBuffer, doWrite, Socket's `_writev` and `_writeGeneric`, and writevGeneric
 * (bench/thread-work.mjs --lines), Node's write path for undici's and ioredis' corked writes. Made along the same
 * transitions (an array literal of an object, emptied, `allBuffers` added), it holds nothing.
 */
export function createWritevExample(): object {
  const chunks: unknown[] & { allBuffers?: boolean } = [{}]
  // The elements kind stays packed objects (Writable's buffered entries); the example keeps no element.
  chunks.pop()
  chunks.allBuffers = true
  return chunks
}
// Also keeping undici's last closed upstream socket (its members give its sockets classes of their own) left
// writevGeneric, Socket's _writeGeneric and _read, and onStreamRead thrown in as many quiet periods (7 of 12 both
// builds, bench/thread-work.mjs): what their code embeds that dies there is something else.
