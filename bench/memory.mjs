// (e) Memory: a fresh proxy beside the floor (bench/floor.mjs: Fastify + undici + two EVALSHA per request)
// and the plain relay (bench/relay-floor.mjs: node:http + undici), measured the same way in the same run, so
// each figure reads beside what the stack itself costs. Both floors hold every stream open upstream at once,
// as Loopers does, and with the launcher's node flags and environment. Per process: VmRSS right after start; idle a few seconds and a minute (quick: 15 s) after
// the last of 20 requests (10 plain, 10 streamed, one at a time); the peak while 1,000 streams are open at
// once (sampled every 100 ms); and RSS a while after those streams ended (Loopers returns a burst's memory
// once it has been idle for LOOPERS_IDLE_RELEASE_MS, 30 s by default; quick runs do not wait for it).
import { burst, createPool } from './load.mjs'
import { launcherEnv, launcherFlags, PROXY_CORE, rssMb, rssSplitMb, sleep, spawnChild, startFloor, startRelayFloor, stopChild } from './procs.mjs'
import { requestPair, streamBody } from './scenarios.mjs'

const CHAT_BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })
const STREAMS = 1000
const WARM_REQUESTS = 20
const IDLE_AFTER_S = 3

export async function memory(ctx) {
  const idleLateAfterS = ctx.quick ? 10 : 60
  // Past the proxy's idle release (30 s without requests, checked every 7.5 s, then the collection itself).
  const afterLoadS = ctx.quick ? 5 : 45
  const proxied = (body) => requestPair(ctx.key, body).proxied
  const direct = (body) => requestPair(ctx.key, body).direct
  const started = []
  try {
    // The floor strips the provider segment (/openai) as Loopers does; the relay forwards paths as they are.
    // Both run with the node flags and environment the proxy's launcher gives it (as every floor, bench/procs.mjs).
    const targets = [
      { name: 'proxy', process: await ctx.startProxy({ name: 'proxy-memory' }), request: proxied },
      { name: 'floor', process: await startFloor({ pin: ctx.pin, upstreamUrl: ctx.fake.url, store: 'redis', redisUrl: ctx.redisUrl, connections: 'unlimited' }), request: proxied },
      { name: 'relay', process: await startRelayFloor({ pin: ctx.pin, upstreamUrl: ctx.fake.url, connections: 'unlimited' }), request: direct },
    ]
    started.push(...targets.map((t) => t.process))
    // A bare Node process with the launcher's flags, serving nothing: what the runtime alone holds, the part of
    // every figure no code of ours or the stack's can remove (most of it the node binary's own mapped pages).
    const bare = spawnChild(process.execPath, [...launcherFlags(), '-e', 'setInterval(() => process.ppid === 1 && process.exit(0), 1000)'], { core: PROXY_CORE, pin: ctx.pin, env: { PATH: process.env.PATH ?? '', ...launcherEnv() } })
    started.push({ stop: () => stopChild(bare) })
    const out = Object.fromEntries(targets.map((t) => [t.name, { afterStartMb: rssMb(t.process.pid) }]))

    // Half plain, half streamed, one after another: what a lightly used proxy has seen.
    await ctx.fake.reset({ completionTokens: 16, chunks: 20, chunkDelayMs: 1, word: ' tok' })
    for (const t of targets) {
      const one = createPool(t.process.url, 1)
      const requests = [t.request(CHAT_BODY), t.request(streamBody())]
      for (let i = 0; i < WARM_REQUESTS; i++) await burst({ origin: t.process.url, requests: [requests[i % 2]], pool: one })
      await one.close()
      out[t.name].warmedAt = Date.now()
    }
    for (const t of targets) {
      await sleepUntil(out[t.name].warmedAt + IDLE_AFTER_S * 1000)
      out[t.name].idleMb = rssMb(t.process.pid)
    }
    for (const t of targets) {
      await sleepUntil(out[t.name].warmedAt + idleLateAfterS * 1000)
      out[t.name].idleLateMb = rssMb(t.process.pid)
      out[t.name].idleLateSplitMb = rssSplitMb(t.process.pid)
    }
    const bareNode = { rssMb: rssMb(bare.pid), splitMb: rssSplitMb(bare.pid) }

    const chunks = ctx.quick ? 20 : 100
    const chunkDelayMs = 50
    // One target at a time holds the streams; each is read again once `afterLoadS` have passed since the last ended.
    for (const t of targets) {
      await ctx.fake.reset({ chunks, chunkDelayMs, word: ' tok' })
      let peak = out[t.name].idleLateMb
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, rssMb(t.process.pid) ?? 0)
          await sleep(100)
        }
      })()
      const run = await burst({ origin: t.process.url, requests: Array(STREAMS).fill(t.request(streamBody())), drainMs: 120_000 })
      sampling = false
      await sampler
      const ledger = await ctx.fake.ledger()
      Object.assign(out[t.name], {
        underLoadMb: peak,
        completed: run.ok,
        errors: run.non2xx + run.transportErrors,
        maxOpenUpstream: ledger.maxOpen,
        elapsedMs: run.elapsedMs,
        ttfbMs: run.ttfbMs,
        endedAt: Date.now(),
      })
    }
    await sleepUntil(out.relay.endedAt + afterLoadS * 1000)
    for (const t of targets) {
      const o = out[t.name]
      o.afterLoadMb = rssMb(t.process.pid)
      ctx.log(`  memory ${t.name}: start ${fmtMb(o.afterStartMb)}, idle ${fmtMb(o.idleMb)} / ${fmtMb(o.idleLateMb)}, ${STREAMS} streams ${fmtMb(o.underLoadMb)}, ${afterLoadS} s or more after ${fmtMb(o.afterLoadMb)} MiB (${o.completed} completed)`)
    }
    // The proxy's figures stay at the top level (the report and earlier results read them there).
    return {
      ...out.proxy,
      warmRequests: WARM_REQUESTS,
      idleAfterS: IDLE_AFTER_S,
      idleLateAfterS,
      afterLoadS: afterLoadS,
      streams: STREAMS,
      streamSeconds: (chunks * chunkDelayMs) / 1000,
      floor: out.floor,
      relay: out.relay,
      bareNode,
    }
  } finally {
    for (const p of started) await p.stop()
  }
}

function sleepUntil(at) {
  return sleep(Math.max(0, at - Date.now()))
}

function fmtMb(mb) {
  return mb === null || mb === undefined ? '—' : mb.toFixed(0)
}
