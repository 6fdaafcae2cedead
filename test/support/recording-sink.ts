import { EventEmitter } from 'node:events'
import type { StreamSink } from '../../src/stream/meter.js'

/** A client connection for stream tests: records what it is sent. */
export class RecordingSink extends EventEmitter implements StreamSink {
  chunks: Buffer[] = []
  writableEnded = false
  destroyed = false
  write(chunk: Buffer): boolean {
    this.chunks.push(chunk)
    return true
  }
  end(chunk?: Buffer): void {
    if (chunk) this.chunks.push(chunk)
    this.writableEnded = true
  }
  text(): string {
    return Buffer.concat(this.chunks).toString()
  }
}
