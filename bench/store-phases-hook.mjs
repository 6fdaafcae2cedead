// Preloaded (`node --import`) into a proxy by bench/store-phases.mjs, never in production: times the budget store's
// calls inside the process. Every store call, either store: from the call to its end (the store's own call observer,
// as metrics.ts hears it). On the embedded store also each phase of a commit: the wait from a work's queueing to the
// group commit's turn (setImmediate), and how much of it the caller's own code after the call took (until a microtask
// queued at the call runs), BEGIN IMMEDIATE, the works' statements, the deferred writes, and COMMIT (the WAL
// write), each with the batch's size. It does so by rewriting two compiled files as they load (dist/metrics.js and
// dist/budget/sqlite/database.js: one timing line at each phase; nothing else changes). SIGUSR2 starts a window
// (samples dropped); the next SIGUSR2 appends the window's samples to the file LOOPERS_BENCH_PHASES_FILE names as
// one JSON line and starts the next window.
import { appendFileSync } from 'node:fs'
import { registerHooks } from 'node:module'
import { performance } from 'node:perf_hooks'
import { isMainThread } from 'node:worker_threads'

const file = process.env.LOOPERS_BENCH_PHASES_FILE
const MAX_SAMPLES = 200_000

/** Each source text replaced (its first occurrence, which must be its only one); the load fails loudly otherwise (the compiled file changed). */
const REWRITES = {
  '/dist/metrics.js': [['store.observeCalls((op, startedMs, failed) => (', 'store.observeCalls((op, startedMs, failed) => (globalThis.__lpPhases.call(op, startedMs, failed), ']],
  '/dist/budget/sqlite/database.js': [
    // syncEndMs: when the caller's own synchronous code after the call has ended (a microtask queued at the call runs then).
    [
      'queue.push({ what, work, resolve: resolve, reject, observer: observer, startedMs });',
      '{ const q = { queuedMs: performance.now(), syncEndMs: 0, what, work, resolve: resolve, reject, observer: observer, startedMs }; queueMicrotask(() => { q.syncEndMs = performance.now(); }); queue.push(q); }',
    ],
    ['const flush = () => {\n', 'const flush = () => {\n        globalThis.__lpPhases.turn(queue);\n'],
    ['    c.begin.run();\n', '    const t0 = performance.now();\n    c.begin.run();\n    const t1 = performance.now();\n'],
    ['const result = work();\n', 'const result = work();\n        const t2 = performance.now();\n'],
    ['        c.commit.run();\n', '        const t3 = performance.now();\n        c.commit.run();\n        globalThis.__lpPhases.tx(t0, t1, t2, t3, performance.now());\n'],
  ],
}

if (isMainThread && file !== undefined) {
  let samples = { calls: [], waits: [], txs: [] }
  // The batch the next transaction commits (set at each group commit's turn; 'other': a commit outside it).
  let batch = { what: 'other', size: 0 }
  const push = (list, row) => {
    if (list.length < MAX_SAMPLES) list.push(row)
  }
  globalThis.__lpPhases = {
    call(op, startedMs, failed) {
      if (!failed && startedMs > 0) push(samples.calls, [op, performance.now() - startedMs])
    },
    turn(queue) {
      const now = performance.now()
      const size = Math.min(queue.length, 64)
      batch = { what: size === 1 ? queue[0].what : 'batch', size }
      for (let i = 0; i < size; i++) push(samples.waits, [queue[i].what, size, now - queue[i].queuedMs, queue[i].syncEndMs === 0 ? null : queue[i].syncEndMs - queue[i].queuedMs])
    },
    tx(t0, t1, t2, t3, t4) {
      push(samples.txs, [batch.what, batch.size, t1 - t0, t2 - t1, t3 - t2, t4 - t3])
      batch = { what: 'other', size: 0 }
    },
  }
  let windows = 0
  process.on('SIGUSR2', () => {
    if (windows++ > 0) appendFileSync(file, `${JSON.stringify(samples)}\n`)
    samples = { calls: [], waits: [], txs: [] }
  })
  registerHooks({
    load(url, context, nextLoad) {
      const result = nextLoad(url, context)
      const rewrites = Object.entries(REWRITES).find(([tail]) => url.endsWith(tail))?.[1]
      if (rewrites === undefined) return result
      let source = String(result.source)
      for (const [from, to] of rewrites) {
        if (source.split(from).length !== 2) throw new Error(`store-phases-hook: ${url} does not contain ${JSON.stringify(from)} exactly once`)
        source = source.replace(from, to)
      }
      return { ...result, source }
    },
  })
}
