import type { Inspection } from './inspect-body.js'
import type { Encoding } from './tiktoken.js'

/** How many nice steps below the process the counting worker's thread runs (Linux; src/tokens/worker-thread.ts). */
export const COUNTING_NICE_STEPS = 10

/** A local count the worker knows how to run: tiktoken over an OpenAI-format body, times `factor`. */
export interface CountJob {
  counter: 'chat' | 'responses' | 'embeddings'
  /** Picks the encoding (`encodingForModel`). */
  model: string
  /** Count with both encodings and keep the larger (an Azure deployment: the model's encoding is unknown). */
  anyEncoding?: boolean
  /** 1 for an exact tiktoken count; above 1 for an o200k estimate of another tokenizer. */
  factor: number
  /** The request body as sent (the worker parses it). */
  raw: Uint8Array
  /** Counting stops once the count passes this: the caller only needs to know it does not fit. */
  limit: number
}

export type WorkerRequest =
  | { type: 'count'; id: number; job: CountJob }
  | { type: 'warm'; id: number; encodings: Encoding[] }
  /** A big body to read off the event loop (`inspectBody`); `shape` names its loop shape (LOOP_SHAPES). */
  | { type: 'inspect'; id: number; raw: Uint8Array; shape: string | null }
  /** A big upstream answer whose members `keys` (its usage) to read off the event loop (`pickMemberObject`). */
  | { type: 'pick'; id: number; raw: Uint8Array; keys: readonly string[] }

/** The worker's answer: tokens (null when the body cannot be counted) and the media parts in the body. */
export interface CountReply {
  id: number
  tokens: number | null
  media: number | null
}

/** The worker's reading of a big body; null when it failed (the caller then reads the body itself). */
export interface InspectReply {
  id: number
  inspection: Inspection | null
}

/** The members the worker read of an answer: null when the answer is not a JSON object. */
export interface PickReply {
  id: number
  members: Record<string, unknown> | null
}

export type WorkerReply = CountReply | InspectReply | PickReply
