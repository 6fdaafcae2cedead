import { byteTable, stringEnd } from './json-keys.js'
import { SHARE_SLICE_BYTES, take } from './turn-share.js'

/**
 * The top-level members of a JSON object body as byte spans of its raw bytes, and the edit of some of them
 * without re-serializing the rest: a big body is forwarded as the bytes the meter read, with only the
 * small top-level fields the proxy sets (stream options, output caps) replaced, removed or added.
 */

/** One top-level member: its key (decoded) and where its key and value lie in the raw bytes. */
export interface MemberSpan {
  key: string
  /** Index of the key's opening quote. */
  keyStart: number
  /** Index of the value's first byte, and one past its last. */
  valueStart: number
  valueEnd: number
}

const QUOTE = 0x22
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const COLON = 0x3a

const isSpace = (c: number | undefined): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

/** The index of the first byte at or after `i` that is not JSON whitespace. */
export function skipSpace(raw: Buffer, i: number): number {
  while (isSpace(raw[i])) i++
  return i
}

/** One past the quote that closes the string opened at `start`. */
function afterString(raw: Buffer, start: number): number {
  const end = stringEnd(raw, start)
  if (end < 0) throw new SyntaxError('unterminated string')
  return end + 1
}

// Outside a string, what a byte does to the nesting: opens a string, opens a container, closes one, or nothing.
const OPENS_STRING = 1
const OPENS = 2
const CLOSES = 3
const STRUCTURE = byteTable()
STRUCTURE[QUOTE] = OPENS_STRING
STRUCTURE[OPEN_OBJECT] = OPENS
STRUCTURE[OPEN_ARRAY] = OPENS
STRUCTURE[CLOSE_OBJECT] = CLOSES
STRUCTURE[CLOSE_ARRAY] = CLOSES
// Bytes that end a number or a literal: a comma, a closing bracket or a space.
const ENDS_SCALAR = byteTable()
for (const c of [COMMA, CLOSE_OBJECT, CLOSE_ARRAY, 0x20, 0x0a, 0x0d, 0x09]) ENDS_SCALAR[c] = 1

/**
 * One past the value of valid JSON that starts at `start` (no leading space): a string, a container, or a number or
 * literal up to `,` `}` `]` or a space. Throws SyntaxError for an unterminated string or container.
 */
export function valueEnd(raw: Buffer, start: number): number {
  const kind = STRUCTURE[raw[start] as number]
  if (kind === OPENS_STRING) return afterString(raw, start)
  const length = raw.length
  let k = start + 1
  if (kind !== OPENS) {
    while (k < length && ENDS_SCALAR[raw[k] as number] === 0) k++
    return k
  }
  for (let depth = 1; k < length; k++) {
    // Past the end raw[k] is undefined, which ends the inner loop and matches no branch: the outer test then ends it.
    let c = STRUCTURE[raw[k] as number]
    while (c === 0) c = STRUCTURE[raw[++k] as number]
    if (c === OPENS_STRING) k = afterString(raw, k) - 1
    else if (c === OPENS) depth++
    else if (c === CLOSES && --depth === 0) return k + 1
  }
  throw new SyntaxError('unterminated container')
}

/**
 * The members of the JSON object `raw` holds, in order. `raw` must be valid JSON (the caller parsed it);
 * throws SyntaxError when it is not an object.
 */
export function topLevelMembers(raw: Buffer): MemberSpan[] {
  const members: MemberSpan[] = []
  let i = skipSpace(raw, 0)
  if (raw[i] !== OPEN_OBJECT) throw new SyntaxError('not an object')
  i = skipSpace(raw, i + 1)
  while (raw[i] === QUOTE) {
    const keyStart = i
    const keyEnd = afterString(raw, i)
    const key = JSON.parse(raw.toString('utf8', keyStart, keyEnd)) as string
    i = skipSpace(raw, keyEnd)
    if (raw[i] !== COLON) throw new SyntaxError('expected a colon')
    const valueStart = skipSpace(raw, i + 1)
    const end = valueEnd(raw, valueStart)
    members.push({ key, keyStart, valueStart, valueEnd: end })
    i = skipSpace(raw, end)
    if (raw[i] === COMMA) i = skipSpace(raw, i + 1)
  }
  if (raw[i] !== CLOSE_OBJECT) throw new SyntaxError('expected the end of the object')
  return members
}

/** A member to set (its JSON text) or, with `json` null, to remove. */
export interface MemberEdit {
  key: string
  json: string | null
}

/**
 * `raw` with `edits` applied to its top-level members: a member that exists gets its value replaced or is
 * removed, a new one is added at the end. Every other byte is kept as it was (the separators between two
 * kept neighbours too). The copy runs in slices (`joinInSlices`), so a 10 MiB body never holds the
 * event loop for long.
 */
export async function spliceMembers(raw: Buffer, members: readonly MemberSpan[], edits: readonly MemberEdit[]): Promise<Buffer> {
  const byKey = new Map(edits.map((e) => [e.key, e.json]))
  const first = members[0]
  const last = members.at(-1)
  // Before the first member and after the last one: the braces and whatever space the client put around them.
  const head = first === undefined ? raw.subarray(0, raw.indexOf(OPEN_OBJECT) + 1) : raw.subarray(0, first.keyStart)
  const tail = last === undefined ? raw.subarray(raw.indexOf(OPEN_OBJECT) + 1) : raw.subarray(last.valueEnd)
  const pieces: Array<Buffer | string> = [head]
  let previous = -2
  let written = 0
  members.forEach((member, m) => {
    const edited = byKey.has(member.key)
    const json = byKey.get(member.key)
    byKey.delete(member.key)
    if (edited && json === null) return
    if (written > 0) pieces.push(previous === m - 1 ? raw.subarray(members[m - 1]!.valueEnd, member.keyStart) : ',')
    if (edited) pieces.push(raw.subarray(member.keyStart, member.valueStart), json as string)
    else pieces.push(raw.subarray(member.keyStart, member.valueEnd))
    previous = m
    written++
  })
  for (const [key, json] of byKey) {
    if (json === null) continue
    pieces.push(`${written > 0 ? ',' : ''}${JSON.stringify(key)}:${json}`)
    written++
  }
  pieces.push(tail)
  return joinInSlices(pieces)
}

/**
 * One past the last member's value in the JSON object `raw` (valid JSON: the caller parsed it), found from its
 * end, without walking it; -1 when the object has no member. Throws SyntaxError when `raw` is not an object.
 */
export function lastMemberEnd(raw: Buffer): number {
  let i = raw.length - 1
  while (isSpace(raw[i])) i--
  if (raw[i] !== CLOSE_OBJECT) throw new SyntaxError('not an object')
  i--
  while (isSpace(raw[i])) i--
  // No value ends with `{` (a string ends with its quote, a container with its closer): the object is empty.
  return raw[i] === OPEN_OBJECT ? -1 : i + 1
}

/**
 * `raw` with `added` (members it does not have) after its last member, which ends at `end` (lastMemberEnd): the
 * bytes spliceMembers gives for the same additions, without walking the members before them.
 */
export function appendMembers(raw: Buffer, end: number, added: readonly MemberEdit[]): Promise<Buffer> {
  let text = ''
  for (const { key, json } of added) if (json !== null) text += `,${JSON.stringify(key)}:${json}`
  return joinInSlices([raw.subarray(0, end), text, raw.subarray(end)])
}

/**
 * `pieces` (bytes, or text as UTF-8) joined into one buffer. Past one slice the copy runs in slices of
 * SHARE_SLICE_BYTES within the turn share (./turn-share.ts): a 10 MiB join never holds the loop for long,
 * and many at once cost a turn no more than one.
 */
export async function joinInSlices(pieces: ReadonlyArray<Buffer | string>): Promise<Buffer> {
  const parts = pieces.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p))
  const total = parts.reduce((n, p) => n + p.length, 0)
  if (total <= SHARE_SLICE_BYTES) return Buffer.concat(parts, total)
  const out = Buffer.allocUnsafeSlow(total)
  let offset = 0
  let inSlice = SHARE_SLICE_BYTES
  for (const part of parts) {
    for (let from = 0; from < part.length; ) {
      if (inSlice === SHARE_SLICE_BYTES) {
        await take()
        inSlice = 0
      }
      const n = Math.min(part.length - from, SHARE_SLICE_BYTES - inSlice)
      part.copy(out, offset, from, from + n)
      offset += n
      from += n
      inSlice += n
    }
  }
  return out
}
