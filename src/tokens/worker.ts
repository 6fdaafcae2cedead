/**
 * The main-thread side of the counting worker: exact token counts of request bodies run in one
 * worker thread, so a 10 MiB prompt or building an encoder never holds the proxy's event loop.
 * Started on first use (or by `warm`); bounded in queued jobs and bytes; a count that fails, times out
 * or finds the queue full resolves to null, and the caller keeps its cheap bound.
 */
import { Worker } from 'node:worker_threads'
import type { Encoding } from './tiktoken.js'
import type { Inspection } from './inspect-body.js'
import type { CountJob, CountReply, InspectReply, PickReply, WorkerReply, WorkerRequest } from './worker-protocol.js'

export type { CountJob } from './worker-protocol.js'

/** What a local count found: input tokens (beyond media) and the media parts the body carries. */
export interface LocalCount {
  tokens: number
  media: number | null
}

export interface TokenCounter {
  /** Counts one body in the worker; null when it cannot (queue full, timeout, worker fault, unparseable body). */
  count(job: CountJob): Promise<LocalCount | null>
  /**
   * Reads a big body off the event loop (`inspectBody`; `shape` a LOOP_SHAPES name); null when it cannot
   * (no room in the queue within `maxRoomWaitMs`, timeout, worker fault). A body in a SharedArrayBuffer
   * crosses without a copy.
   */
  inspect(raw: Buffer, shape: string | null): Promise<Inspection | null>
  /**
   * Reads the members `keys` of a big answer off the event loop (`pickMemberObject`: `members` null when it is
   * not a JSON object); null when the worker cannot, as `inspect`. A body in a SharedArrayBuffer crosses without a copy.
   */
  pick(raw: Buffer, keys: readonly string[]): Promise<{ members: Record<string, unknown> | null } | null>
  /** Starts the worker and builds these encoders in it, so the first exact count does not wait for them. */
  warm(encodings: Encoding[]): Promise<void>
  /** Stops the worker; later counts start a new one. */
  close(): Promise<void>
}

export interface TokenCounterOptions {
  /**
   * Longest wait for one count before the caller falls back to its bound: this plus `timeoutMsPerMiB` for
   * each MiB of body. Default 5 s (building an encoder takes ~1 s) + 2 s per MiB (tiktoken counts ~3 MiB/s).
   */
  timeoutMs?: number
  timeoutMsPerMiB?: number
  /** Body bytes waiting or running at once. Default 64 MiB. */
  maxPendingBytes?: number
  /** Longest wait of `inspect` and `pick` for room in a full queue (back-pressure on big bodies). Default 2 s. */
  maxRoomWaitMs?: number
}

/** Jobs waiting or running at once; beyond it a count resolves to null at once. */
const MAX_PENDING = 4_096

interface Pending {
  resolve(reply: WorkerReply | null): void
  bytes: number
  timer: NodeJS.Timeout
}

export function createTokenCounter(options: TokenCounterOptions = {}): TokenCounter {
  const timeoutMs = options.timeoutMs ?? 5_000
  const timeoutMsPerMiB = options.timeoutMsPerMiB ?? 2_000
  const maxPendingBytes = options.maxPendingBytes ?? 64 * 1024 * 1024
  const maxRoomWaitMs = options.maxRoomWaitMs ?? 2_000
  const pending = new Map<number, Pending>()
  /** Callers waiting for room in the queue: woken whenever a job leaves it. */
  const roomWaiters = new Set<() => void>()
  let pendingBytes = 0
  let nextId = 1
  let worker: Worker | null = null

  function settle(id: number, reply: WorkerReply | null): void {
    const job = pending.get(id)
    if (job === undefined) return
    pending.delete(id)
    pendingBytes -= job.bytes
    clearTimeout(job.timer)
    job.resolve(reply)
    for (const wake of roomWaiters) wake()
  }

  const full = (bytes: number): boolean => pending.size >= MAX_PENDING || pendingBytes + bytes > maxPendingBytes

  /** Resolves when a job leaves the queue (true) or at `deadline` (false). */
  function jobLeft(deadline: number): Promise<boolean> {
    const left = deadline - Date.now()
    if (left <= 0) return Promise.resolve(false)
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        roomWaiters.delete(wake)
        resolve(true)
      }
      const timer = setTimeout(() => {
        roomWaiters.delete(wake)
        resolve(false)
      }, left)
      roomWaiters.add(wake)
    })
  }

  function start(): Worker {
    if (worker !== null) return worker
    const started = spawnWorker()
    started.unref()
    started.on('message', (reply: WorkerReply) => settle(reply.id, reply))
    const fail = () => {
      if (worker === started) worker = null
      for (const id of [...pending.keys()]) settle(id, null)
    }
    started.on('error', fail)
    started.on('exit', fail)
    worker = started
    return started
  }

  function send(request: WorkerRequest, bytes: number): Promise<WorkerReply | null> {
    if (full(bytes)) return Promise.resolve(null)
    const running = start()
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(request.id, null), timeoutMs + (bytes / 1_048_576) * timeoutMsPerMiB)
      timer.unref()
      pending.set(request.id, { resolve, bytes, timer })
      pendingBytes += bytes
      running.postMessage(request)
    })
  }

  /** `send` once the queue has room for `bytes` (back-pressure on big bodies, waited for at most maxRoomWaitMs). */
  async function sendWhenRoom(request: WorkerRequest, bytes: number): Promise<WorkerReply | null> {
    const deadline = Date.now() + maxRoomWaitMs
    while (full(bytes)) {
      if (bytes > maxPendingBytes || !(await jobLeft(deadline))) return null
    }
    // The check above and the send run in one turn.
    return send(request, bytes)
  }

  return {
    async count(job) {
      const reply = (await send({ type: 'count', id: nextId++, job }, job.raw.byteLength)) as CountReply | null
      return reply === null || reply.tokens === null ? null : { tokens: reply.tokens, media: reply.media }
    },
    async inspect(raw, shape) {
      const reply = (await sendWhenRoom({ type: 'inspect', id: nextId++, raw, shape }, raw.byteLength)) as InspectReply | null
      return reply?.inspection ?? null
    },
    async pick(raw, keys) {
      const reply = (await sendWhenRoom({ type: 'pick', id: nextId++, raw, keys }, raw.byteLength)) as PickReply | null
      return reply === null ? null : { members: reply.members }
    },
    async warm(encodings) {
      await send({ type: 'warm', id: nextId++, encodings }, 0)
    },
    async close() {
      const running = worker
      worker = null
      if (running !== null) await running.terminate()
    },
  }
}

/**
 * The worker thread: `worker-thread.js` beside this file. Run from TypeScript sources (tests), Node
 * strips the types and a resolve hook maps the sources' `.js` imports to their `.ts` files.
 */
function spawnWorker(): Worker {
  const fromSources = import.meta.url.endsWith('.ts')
  const entry = new URL(`./worker-thread.${fromSources ? 'ts' : 'js'}`, import.meta.url)
  if (!fromSources) return new Worker(entry)
  const bootstrap = `
const { registerHooks } = require('node:module')
registerHooks({
  resolve(specifier, context, next) {
    try { return next(specifier, context) } catch (error) {
      if (specifier.startsWith('.') && specifier.endsWith('.js')) return next(specifier.slice(0, -3) + '.ts', context)
      throw error
    }
  },
})
import(${JSON.stringify(entry.href)})`
  return new Worker(bootstrap, { eval: true, execArgv: ['--experimental-transform-types', '--no-warnings'] })
}

let shared: TokenCounter | null = null

/** The process's one counting worker (its encoders are built once and kept). */
export function sharedTokenCounter(): TokenCounter {
  shared ??= createTokenCounter()
  return shared
}
