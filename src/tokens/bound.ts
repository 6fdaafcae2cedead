/**
 * Cheap, provable upper bounds of a request's input tokens. Every tokenizer the providers use is byte-level
 * (each token is at least one UTF-8 byte of text), so a body's byte length bounds the text tokens in it;
 * media parts (images, audio, files) are counted apart and priced per part by the caller's model.
 */

/**
 * Tokens a provider adds beyond the body bytes when it renders tool definitions into a system prompt
 * (Gemini, Bedrock) or injects a system prompt of its own (Mistral's safety and reasoning prompts). Not
 * added to requests without them: their JSON wrappers outweigh the chat template's message delimiters.
 */
export const PRIMING_TOKENS = 1024

/** Values visited at most by `mediaParts`: a 10 MiB JSON body holds about 5 million. */
export const MAX_MEDIA_WALK_NODES = 6_000_000

/** The fewest JSON bytes one media part can take (`{"type":"file"}`), for bounding a body too large to walk. */
const MIN_MEDIA_PART_BYTES = 15

/** `type` values of media content parts: OpenAI chat/responses, Mistral, Anthropic. */
const MEDIA_TYPES = new Set([
  'image_url', // OpenAI chat, Mistral
  'input_image', // OpenAI responses
  'input_audio', // OpenAI chat, Mistral
  'input_file', // OpenAI responses
  'file', // OpenAI chat
  'document_url', // Mistral
  'image', // Anthropic
  'document', // Anthropic
])


/** UTF-8 byte length of a raw body or a string. */
export function utf8Bytes(raw: Buffer | string): number {
  return typeof raw === 'string' ? Buffer.byteLength(raw, 'utf8') : raw.length
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * True for one image/audio/video/file content part in any provider's request format. A new key or `type` value
 * read here must also be in SCAN_WORDS: a body without any of those words is not walked (request-body.ts).
 */
export function isMediaPart(node: Record<string, unknown>): boolean {
  if (typeof node.type === 'string' && MEDIA_TYPES.has(node.type)) return true
  // Each key spelled out, not looped over: a load by a literal name is several times cheaper on every object walked.
  // Gemini parts whose object value is the medium (both JSON spellings).
  if (isObject(node.inlineData) || isObject(node.inline_data) || isObject(node.fileData) || isObject(node.file_data)) return true
  // Bedrock Converse (and Nova invoke) blocks `{image|document|video: {format, source}}`.
  return hasSource(node.image) || hasSource(node.document) || hasSource(node.video)
}

function hasSource(block: unknown): boolean {
  return isObject(block) && 'source' in block
}

/**
 * Counts media parts anywhere in a parsed JSON body, iteratively (deep nesting cannot overflow the stack)
 * and visiting at most `maxNodes` values. Returns null when the body has more values than that.
 * A counted part is not searched further.
 */
export function mediaParts(body: unknown, maxNodes: number = MAX_MEDIA_WALK_NODES): number | null {
  let parts = 0
  let visited = 0
  const stack: unknown[] = [body]
  while (stack.length > 0) {
    const node = stack.pop()
    if (typeof node !== 'object' || node === null) continue
    if (++visited > maxNodes) return null
    if (Array.isArray(node)) {
      for (const item of node) if (typeof item === 'object' && item !== null) stack.push(item)
      continue
    }
    const record = node as Record<string, unknown>
    if (isMediaPart(record)) {
      parts += 1
      continue
    }
    for (const key in record) {
      const value = record[key]
      if (typeof value === 'object' && value !== null) stack.push(value)
    }
  }
  return parts
}

/**
 * Upper bound of a request's input tokens: body bytes + media parts × `tokensPerMedia` + `overheadTokens`
 * (what the adapter knows its provider adds beyond the body: PRIMING_TOKENS where the body's own JSON
 * does not already outweigh it). A body too large to walk is assumed to be
 * made of the smallest possible media parts. Content the body only references (a previous response, a
 * cached context, a stored prompt) is not in the body and not in this bound. `walked`: the parts `scanBody`
 * already counted (else the body is walked here).
 */
export function boundInputTokens(raw: Buffer, body: unknown, tokensPerMedia: number, overheadTokens = 0, walked?: number | null): number {
  const bytes = raw.length
  const parts = (walked === undefined ? mediaParts(body) : walked) ?? Math.floor(bytes / MIN_MEDIA_PART_BYTES)
  return Math.min(bytes + parts * tokensPerMedia + overheadTokens, Number.MAX_SAFE_INTEGER)
}

/**
 * Input tokens a request can make the provider read beyond its body (a file by id or URL, an S3 object,
 * a hosted tool's results): the largest context window any priced model accepts (Gemini 1.5 Pro).
 */
export const REFERENCED_CONTEXT_TOKENS = 2_097_152

/** `source.type` values of Anthropic blocks the provider fetches itself. */
const FETCHED_SOURCES = new Set(['url', 'file'])

/**
 * True for one part that makes the provider fetch content the body does not carry. A new key or `type` value
 * read here must also be in SCAN_WORDS: a body without any of those words is not walked (request-body.ts).
 */
function fetchesContent(node: Record<string, unknown>): boolean {
  const type = node.type
  // OpenAI Responses `input_file` and chat `file` parts by id or URL; Mistral `document_url` and `file` by id.
  if (type === 'input_file' && (node.file_id != null || node.file_url != null)) return true
  if (type === 'file' && (node.file_id != null || (isObject(node.file) && (node.file.file_id != null || node.file.file_url != null)))) return true
  if (type === 'document_url' || type === 'container_upload') return true
  // Anthropic documents and images by URL or Files API id.
  if (isObject(node.source) && typeof node.source.type === 'string' && FETCHED_SOURCES.has(node.source.type) && (type === 'document' || type === 'image')) return true
  // Bedrock Converse and Nova: any media source in S3.
  return isObject(node.s3Location) || isObject(node.s3_location)
}

/** What one walk over a parsed body finds. */
export interface BodyScan {
  /** Media parts (as `mediaParts` counts them), or null when the body has more values than can be walked. */
  mediaParts: number | null
  /** Some part makes the provider fetch content itself (see `fetchesContent`); assumed for a body too large to walk. */
  fetchesContent: boolean
  /**
   * Some object has an object-valued `fileData` or `file_data` (a Gemini part naming an uploaded file, which
   * the Gemini adapter bounds by a context window); assumed for a body too large to walk.
   */
  fileData: boolean
}

/**
 * Every key and string value a `scanBody` answer other than NOTHING_SCANNED depends on: each media type, each key
 * isMediaPart, fetchesContent and the fileData search read on an object. A body in which none is a key or a
 * string value scans as NOTHING_SCANNED (within MAX_MEDIA_WALK_NODES), so its walk can be skipped.
 */
export const SCAN_WORDS: readonly string[] = [
  ...MEDIA_TYPES,
  'inlineData',
  'inline_data',
  'fileData',
  'file_data',
  'image',
  'document',
  'video',
  'container_upload',
  's3Location',
  's3_location',
]

/** What `scanBody` answers for a body with no media part, no fetched content and no Gemini file. */
export const NOTHING_SCANNED: BodyScan = Object.freeze({ mediaParts: 0, fetchesContent: false, fileData: false })

/** Objects walked between two yields to the event loop (about a millisecond of work). */
const SCAN_SLICE_NODES = 4096

/** On the walk's stack below the values of a counted media part: popped, the walk has left that part. */
const LEAVE_MEDIA = Symbol('leave media')

/** Where one `scanBody` walk stands between two slices. */
interface BodyWalk {
  /** Values still to visit, with a LEAVE_MEDIA mark below the values of the media part being searched. */
  stack: unknown[]
  /** Inside a counted media part: its values are searched, not counted again. */
  inMedia: boolean
  visited: number
  parts: number
  fetches: boolean
  fileData: boolean
}

/**
 * `mediaParts` and the fetched-content search in one walk, in slices: a body of millions of small objects
 * (a long transcript) yields to the event loop every few thousand, so it stalls no other request.
 * `sliceNodes`: objects between two yields (Infinity in the counting worker, which has no one to yield to).
 * A body walked within its first slice (every small one) is answered at once, without a promise.
 */
export function scanBody(body: unknown, maxNodes: number = MAX_MEDIA_WALK_NODES, sliceNodes: number = SCAN_SLICE_NODES): BodyScan | Promise<BodyScan> {
  const walk: BodyWalk = { stack: [body], inMedia: false, visited: 0, parts: 0, fetches: false, fileData: false }
  const scan = walkSlice(walk, maxNodes, sliceNodes)
  return scan === null ? walkRest(walk, maxNodes, sliceNodes) : scan
}

async function walkRest(walk: BodyWalk, maxNodes: number, sliceNodes: number): Promise<BodyScan> {
  for (;;) {
    await new Promise<void>((resolve) => setImmediate(resolve))
    const scan = walkSlice(walk, maxNodes, sliceNodes)
    if (scan !== null) return scan
  }
}

/** Walks on until `sliceNodes` more objects were visited: the scan at the end of the body, null before it. */
function walkSlice(walk: BodyWalk, maxNodes: number, sliceNodes: number): BodyScan | null {
  const stack = walk.stack
  while (stack.length > 0) {
    const node = stack.pop()
    if (node === LEAVE_MEDIA) {
      walk.inMedia = false
      continue
    }
    if (typeof node !== 'object' || node === null) continue
    if (++walk.visited > maxNodes) return { mediaParts: null, fetchesContent: true, fileData: true }
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const item: unknown = node[i]
        if (typeof item === 'object' && item !== null) stack.push(item)
      }
    } else {
      const record = node as Record<string, unknown>
      if (!walk.fetches && fetchesContent(record)) walk.fetches = true
      if (!walk.fileData && (isObject(record.fileData) || isObject(record.file_data))) walk.fileData = true
      if (!walk.inMedia && isMediaPart(record)) {
        walk.parts += 1
        walk.inMedia = true
        stack.push(LEAVE_MEDIA)
      }
      for (const key in record) {
        const value = record[key]
        if (typeof value === 'object' && value !== null) stack.push(value)
      }
    }
    // A slice ends after its last object (the worker passes Infinity: it never yields).
    if (walk.visited % sliceNodes === 0) return null
  }
  return { mediaParts: walk.parts, fetchesContent: walk.fetches, fileData: walk.fileData }
}
