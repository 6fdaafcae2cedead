import type http from 'node:http'

/** What a fake upstream served on one answer: bytes put on the wire, and whether the proxy closed it first. */
export interface Served {
  bytes: number
  closedEarly: boolean
}

/** A Served record for `res`, marked closedEarly when the connection closes before the answer finished. */
export function watchServed(res: http.ServerResponse): Served {
  const entry: Served = { bytes: 0, closedEarly: false }
  res.once('close', () => (entry.closedEarly = !res.writableFinished))
  return entry
}

/**
 * A fake upstream's answer body: writes `chunk` again and again until `served.bytes` (counted as written)
 * reaches `total`, honouring backpressure (waits for 'drain'); stops when the proxy closes the connection.
 */
export async function pour(res: http.ServerResponse, chunk: Buffer, total: number, served: Served): Promise<void> {
  while (served.bytes < total) {
    if (res.destroyed) return
    served.bytes += chunk.length
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done)
          res.off('close', done)
          resolve()
        }
        res.once('drain', done)
        res.once('close', done)
      })
    }
  }
  res.end()
}
