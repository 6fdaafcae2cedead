import type http from 'node:http'

/**
 * A fake upstream's answer body: writes `chunk` again and again until `served.bytes` (counted as written)
 * reaches `total`, honouring backpressure (waits for 'drain'); stops when the proxy closes the connection.
 */
export async function pour(res: http.ServerResponse, chunk: Buffer, total: number, served: { bytes: number }): Promise<void> {
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
