import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import type { LoopFingerprint, LoopShape } from '../../src/loop/types.js'
import type { Json } from '../../src/providers/body.js'
import { LAZY_MIN_BYTES, readLazyBody, readParsedBody } from '../../src/proxy/request-body.js'

/** `raw` (JSON text of an object) with a member no shape reads first, making it at least LAZY_MIN_BYTES: read lazily. */
function padded(raw: string): Buffer {
  const pad = Math.max(0, LAZY_MIN_BYTES - raw.length)
  return Buffer.from(`{"pad":"${'p'.repeat(pad)}",${raw.slice(1)}`)
}

const show = (fp: LoopFingerprint | null): string => (fp === null ? 'null' : `${fp.conversation}/${fp.step}`)

/**
 * The fingerprint of `raw` (JSON text of an object) read each way the proxy reads a body, as `conversation/step`:
 * parsed whole (the counting worker's read), read and parsed, and read lazily from its bytes.
 */
export async function fingerprintWays(shape: LoopShape, raw: string): Promise<{ worker: string; parsed: string; lazy: string }> {
  const worker = show(fingerprintRequest(shape, JSON.parse(raw) as Json))
  const parsed = show((await readParsedBody(Buffer.from(raw), shape)).fingerprint())
  const lazy = show((await readLazyBody(padded(raw), shape)).fingerprint())
  return { worker, parsed, lazy }
}
