// The floor of the stack: the simplest proxy one could build on Loopers' own parts, so every bench
// figure can be read as a ratio to it. Fastify in (body kept as raw bytes), undici out, the upstream's
// answer relayed chunk by chunk, and per request the same store round trips as Loopers' common case:
// one before forwarding (a "reserve") and one after the answer has ended (a "settle").
//   --store=redis --redis=URL   two EVALSHA calls through ioredis (tiny scripts: HINCRBY + EXPIRE)
//   --store=sqlite --db=PATH    two small BEGIN IMMEDIATE transactions through node:sqlite (WAL, synchronous=NORMAL)
//   --store=none                no store at all (a plain pass-through)
//   --connections=256|unlimited  upstream connections (unlimited: every stream open upstream at once, as Loopers)
// `node bench/floor.mjs --upstream=http://127.0.0.1:PORT [--port=0] --store=… [--connections=…]`; prints `{"url": …}`.
import Fastify from 'fastify'
import { Agent } from 'undici'

const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const upstreamOrigin = arg('upstream')
const connections = arg('connections') ?? '256'
const upstream = new Agent({ connections: connections === 'unlimited' ? null : Number(connections) })
const store = await openStore(arg('store') ?? 'none')

// Idle client connections are kept Fastify's default 72 s, as Loopers keeps them (src/http/dual-server.ts): a side whose
// server closed them between runs would measure new connections, not the proxy.
const app = Fastify({ logger: false, keepAliveTimeout: 72_000 })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))
let n = 0
app.route({
  method: ['GET', 'POST'],
  url: '/*',
  handler: async (request, reply) => {
    const id = `r${n++}`
    await store.reserve(id)
    try {
      const answer = await upstream.request({
        origin: upstreamOrigin,
        path: request.url.replace(/^\/[a-z]+/, ''),
        method: request.method,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-upstream' },
        body: request.body,
      })
      reply.hijack()
      const res = reply.raw
      res.writeHead(answer.statusCode, { 'content-type': answer.headers['content-type'] ?? 'application/octet-stream' })
      for await (const chunk of answer.body) if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
      res.end()
    } catch {
      reply.raw.destroy()
    } finally {
      await store.settle(id)
    }
  },
})
const url = await app.listen({ host: '127.0.0.1', port: Number(arg('port') ?? 0) })
process.stdout.write(`${JSON.stringify({ url })}\n`)
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))
setInterval(() => {
  if (process.ppid === 1) process.exit(0)
}, 1_000).unref()

async function openStore(kind) {
  if (kind === 'redis') {
    const { Redis } = await import('ioredis')
    const redis = new Redis(arg('redis'), { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
    // Keys and arguments shaped like Loopers' (a record, five periods, a reservation), work kept tiny.
    const lua = `redis.call('HINCRBY', KEYS[1], 'held', ARGV[1]) redis.call('EXPIRE', KEYS[1], 86400) return {'ok', ARGV[1]}`
    redis.defineCommand('floorReserve', { numberOfKeys: 8, lua })
    redis.defineCommand('floorSettle', { numberOfKeys: 8, lua })
    const keys = (id) => ['floor:rec', 'floor:m', 'floor:h', 'floor:d', 'floor:w', 'floor:mo', 'floor:s', `floor:r:${id}`]
    return {
      reserve: (id) => redis.floorReserve(...keys(id), 1000),
      settle: (id) => redis.floorSettle(...keys(id), -1000),
    }
  }
  if (kind === 'sqlite') {
    const { DatabaseSync } = await import('node:sqlite')
    const db = new DatabaseSync(arg('db'))
    db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;')
    db.exec('CREATE TABLE IF NOT EXISTS held (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT, WITHOUT ROWID; INSERT OR IGNORE INTO held VALUES (\'floor\', 0);')
    const update = db.prepare("UPDATE held SET v = v + ? WHERE k = 'floor'")
    const tx = (amount) => {
      db.exec('BEGIN IMMEDIATE')
      try {
        update.run(amount)
        db.exec('COMMIT')
      } catch (error) {
        db.exec('ROLLBACK')
        throw error
      }
    }
    return { reserve: async () => tx(1000), settle: async () => tx(-1000) }
  }
  return { reserve: async () => {}, settle: async () => {} }
}
