/**
 * The body of a request to a provider's counting endpoint, assembled from the request's own bytes: a big
 * body's large members are copied as the client sent them (never parsed or serialized on the event loop),
 * and a body sent whole is base64-encoded in slices.
 */
import { joinInSlices } from '../http/json-members.js'
import { take } from '../http/turn-share.js'
import type { CountBody } from '../providers/types.js'

/** What a count body is built from: the request body's members and the bytes it is forwarded as (`RequestBody`). */
export interface CountSource {
  /** The JSON text of top-level member `key` as it stands, or undefined when the body has none. */
  member(key: string): Buffer | string | undefined
  /** The body as it is (or was) forwarded. */
  edited(): Promise<Buffer>
}

/** Bytes encoded per slice of the turn share (their base64 is SHARE_SLICE_BYTES): a multiple of 3, so slices encode independently. */
const BASE64_SLICE_BYTES = 3 << 13

/** The count request's bytes for `shape`, built from `source` without a step proportional to its size. */
export async function assembleCountBody(shape: CountBody, source: CountSource): Promise<Buffer> {
  if (shape.kind === 'base64') return wrapBase64(shape.open, await source.edited(), shape.close)
  const pieces: Array<Buffer | string> = [shape.open]
  let written = 0
  for (const member of shape.extra) pieces.push(written++ > 0 ? ',' : '', member)
  for (const field of shape.fields) {
    const value = source.member(field)
    if (value === undefined) continue
    pieces.push(`${written++ > 0 ? ',' : ''}${JSON.stringify(field)}:`, value)
  }
  pieces.push(shape.close)
  return joinInSlices(pieces)
}

/** `open` + base64 of `bytes` + `close` (both ASCII), encoded BASE64_SLICE_BYTES at a time within the turn share. */
async function wrapBase64(open: string, bytes: Buffer, close: string): Promise<Buffer> {
  const out = Buffer.allocUnsafeSlow(open.length + 4 * Math.ceil(bytes.length / 3) + close.length)
  let offset = out.write(open, 0, 'latin1')
  for (let from = 0; from < bytes.length; from += BASE64_SLICE_BYTES) {
    await take()
    offset += out.write(bytes.subarray(from, from + BASE64_SLICE_BYTES).toString('base64'), offset, 'latin1')
  }
  offset += out.write(close, offset, 'latin1')
  return offset === out.length ? out : out.subarray(0, offset)
}
