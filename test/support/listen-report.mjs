// Preloaded with `node --import` into a server a test (or the bench) starts on port 0: writes one line
// `{"port":n}` to file descriptor 3 for each port the process listens on, in listening order. The parent
// learns the port the kernel gave, instead of probing a free one that another process can take meanwhile.
import { writeSync } from 'node:fs'
import net from 'node:net'
import { isMainThread } from 'node:worker_threads'

if (isMainThread) {
  const listen = net.Server.prototype.listen
  net.Server.prototype.listen = function reportingListen(...args) {
    this.once('listening', () => {
      const address = this.address()
      if (address === null || typeof address !== 'object') return
      try {
        writeSync(3, `${JSON.stringify({ port: address.port })}\n`)
      } catch {
        // No descriptor 3 (started without the reporting pipe): nothing to tell.
      }
    })
    return listen.apply(this, args)
  }
}
