import { assembleCountBody } from '../../src/proxy/count-body.js'
import type { CountBody } from '../../src/providers/types.js'

/** The JSON a counting endpoint receives for `shape` built from a parsed (small) request body. */
export async function countRequest(shape: CountBody, body: Record<string, unknown>): Promise<unknown> {
  const source = {
    member: (key: string) => (Object.hasOwn(body, key) ? (JSON.stringify(body[key]) as string | undefined) : undefined),
    edited: async () => Buffer.from(JSON.stringify(body)),
  }
  return JSON.parse((await assembleCountBody(shape, source)).toString('utf8')) as unknown
}
