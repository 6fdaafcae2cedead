/**
 * The counting worker's thread: parses request bodies and counts their tokens with tiktoken, and reads
 * big bodies for the pipeline (`inspectBody`) and the usage of big answers (`pickMemberObject`), off the
 * proxy's event loop. Encoders are built here, once, on first use or on a `warm` message.
 */
import { readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { parentPort } from 'node:worker_threads'
import { pickMemberObject } from '../http/json-pick.js'
import { mediaParts } from './bound.js'
import { inspectBody } from './inspect-body.js'
import { countChatTokens, countEmbeddingTokens, countResponsesTokens, preloadEncoding, type Encoding } from './tiktoken.js'
import { COUNTING_NICE_STEPS, type CountJob, type CountReply, type WorkerRequest } from './worker-protocol.js'

const COUNTERS = {
  chat: countChatTokens,
  responses: countResponsesTokens,
  embeddings: countEmbeddingTokens,
} as const

/** Token count of one job (stopping once past its limit) and the media parts its body carries. */
function count(job: CountJob): Omit<CountReply, 'id'> {
  const body: unknown = JSON.parse(Buffer.from(job.raw).toString('utf8'))
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { tokens: null, media: null }
  // The estimate for a foreign tokenizer is o200k × factor: count o200k only as far as the limit could reach.
  const limit = Math.ceil(job.limit / job.factor)
  const counter = COUNTERS[job.counter]
  const record = body as Record<string, unknown>
  // Model names that pick each encoding (`encodingForModel`).
  const tokens = job.anyEncoding === true ? Math.max(counter(record, 'gpt-4o', limit), counter(record, 'gpt-4', limit)) : counter(record, job.model, limit)
  return { tokens: Math.ceil(tokens * job.factor), media: mediaParts(body) }
}

/**
 * Counting yields the CPU to the proxy's event loop when they share a core: on Linux this thread (and only it, by
 * its thread id) runs 10 nice steps below the process (CFS gives it ~1/10 of the event loop's share: nice 19 gave
 * ~1/70: with the event loop saturated, a 10 MiB count took 14-20 s instead of ~2.5 s, and a big body's read queued
 * behind it could pass its timeout, 7 s for 1 MiB). Elsewhere, or where not permitted, it runs at the process's priority.
 */
function lowerThreadPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (Number.isSafeInteger(tid) && tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + COUNTING_NICE_STEPS))
  } catch {
    // Not Linux, or not permitted: counting still runs off the event loop.
  }
}
lowerThreadPriority()

parentPort?.on('message', (message: WorkerRequest) => {
  if (message.type === 'warm') {
    void Promise.all(message.encodings.map((e: Encoding) => preloadEncoding(e))).then(() => parentPort?.postMessage({ id: message.id, tokens: null, media: null }))
    return
  }
  if (message.type === 'inspect') {
    const raw = Buffer.from(message.raw.buffer, message.raw.byteOffset, message.raw.byteLength)
    void inspectBody(raw, message.shape).then(
      (inspection) => parentPort?.postMessage({ id: message.id, inspection }),
      () => parentPort?.postMessage({ id: message.id, inspection: null }),
    )
    return
  }
  if (message.type === 'pick') {
    const raw = Buffer.from(message.raw.buffer, message.raw.byteOffset, message.raw.byteLength)
    parentPort?.postMessage({ id: message.id, members: pickMemberObject(raw, message.keys) })
    return
  }
  let reply: CountReply
  try {
    reply = { id: message.id, ...count(message.job) }
  } catch {
    reply = { id: message.id, tokens: null, media: null }
  }
  parentPort?.postMessage(reply)
})
