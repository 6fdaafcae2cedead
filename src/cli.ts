#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=1048576 node --max-semi-space-size=16 --min-semi-space-size=4 --no-memory-reducer --initial-old-space-size=128 --no-maglev --v8-pool-size=2 --flush-baseline-code

/** Entry of the `loopers` binary: runs the CLI, then lets the process end (or keeps it up for `serve`). */

// The node flags above are the launcher's (docker/loopers and `npm start` repeat them): V8 sizes its young
// generation by the machine's memory (128 MiB of semi-spaces on 24 GiB, where 1,000 open streams then hold
// ~290 MiB of RSS); 16 MiB semi-spaces, V8's own size on smaller machines, hold ~200 MiB there at no
// measurable CPU cost. V8 also shrinks the young generation (to 1 MiB semi-spaces) at each full collection
// and at its memory reducer's, ~8 s into any lull, then grows it back slowly: traffic after a lull meets a
// scavenge every few dozen requests, more requests in flight survive two of them and are promoted, and that
// brings the next full collection. A floor of 4 MiB and no memory reducer break that cycle (at 500 and 1,000
// req/s after 10 s lulls: a third to a half of the scavenges, ~18% less CPU per request) at no idle memory a
// bench could find: an idle proxy gives memory back through src/idle-release.ts, after 30 s of quiet, instead.
// After each full collection V8 sets old space's limit to ~1.6× what survived (~40 MiB for the proxy's ~24) and
// starts the next one once less room is left than the young generation holds, so any burst of survivors (a
// 10 MiB body being read) brought a mark-compact while small requests waited. 64 MiB as the limit's floor
// (`--initial-old-space-size`) took that away (1 of 46 counts of one did, against 20 of 22); 128 MiB lets the idle
// release's lull collection (src/server.ts) wait for 32 MiB of growth rather than 12 with V8's own still further
// off: each in a quiet period throws away optimized code the next burst recompiles (half as many TurboFan jobs
// and ~30% less V8 worker CPU in 12 runs of 5,000 requests, bench/thread-work.mjs --close-late; 1,000 streams
// 134 MiB).
// No Maglev (V8's tier between baseline code and TurboFan): it compiles on background threads, whose malloc
// arenas keep what those compilations used: ~10 MiB more resident with 1,000 streams open (peak 163-170 MiB
// with it, 152-159 without). Hot code still reaches TurboFan: CPU per streamed chunk is unchanged, per small
// request ~2% higher in paired A/Bs (1.00-1.025), and lower while a fresh process warms up.
// Two V8 platform threads rather than Node's four (they run concurrent marking, parallel scavenges and
// TurboFan's compilations): each that mallocs keeps a glibc arena, ~1 MiB less resident at idle in paired
// probes (`node bench/idle-probe.mjs --cli=dist/cli.js --cli=dist/cli.js::--v8-pool-size=4`).
// V8 drops the bytecode of a function that has not run through six full collections, but keeps its baseline
// (Sparkplug) code, and the bytecode with it, for good unless told to flush that too: with the idle release's
// rounds (src/server.ts), what ran only at start-up or before a lull goes, ~0.6 MiB more of an idle proxy
// (75.8/75.9 against 76.4/76.5 MiB in one paired probe). Optimized code stays; CPU per request unchanged in
// paired A/Bs (1.005 and, the other way round, 0.994).
// glibc's malloc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed, so after the
// first big buffer (a tokenizer's rank file) later ones stay in the heap and their pages stay resident
// (~10 MiB at idle); a fixed threshold of 1 MiB returns every block that big when it is freed.
// A fixed mmap threshold also fixes the trim threshold at 128 KiB: what TurboFan frees at an arena's top goes back
// and faults in again. A higher one cut those faults at 500 req/s while code tiers up (1.4-1.8 a request to 0.08-0.2
// with MALLOC_TRIM_THRESHOLD_ at 2-4 MiB or MALLOC_TOP_PAD_ at 2 MiB) but held 2-3 MiB more 3 s after the last
// request (32 MiB: 11); past tier-up (12,000 requests) faults are 0.01-0.26 a request and CPU the same (0.99, 1.00).

// `loopers keys list | head` closes the pipe early: that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

// `serve` alone (every launcher's command) starts without the command-line parser and the other commands'
// modules, which the proxy would otherwise hold for its life; anything else goes through the parser.
const args = process.argv.slice(2)
const outcome =
  args.length === 1 && args[0] === 'serve'
    ? await (await import('./cli/serve.js')).serveOnly()
    : await (await import('./cli/program.js')).main(process.argv)
if (outcome !== 'serving') {
  process.exitCode = outcome
  // Nothing should keep a one-shot command alive; if something does (a stray socket), do not hang the user's script.
  setTimeout(() => process.exit(outcome), 2_000).unref()
}
