// The floor for relaying a stream in Node: node:http in, undici out, every upstream chunk written to
// the client as it comes, no parsing, no budget. The bench measures its CPU per chunk the same way as
// the proxy's, so the report can tell what metering adds to what relaying alone costs.
// `node bench/relay-floor.mjs --upstream=http://127.0.0.1:PORT [--port=0] [--connections=256|unlimited]`; prints `{"url": …}`.
// --connections=unlimited holds every stream open upstream at once, as Loopers does (the memory scenario).
import http from 'node:http'
import { Pool } from 'undici'

const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const connections = arg('connections') ?? '256'
const upstream = new Pool(arg('upstream'), { connections: connections === 'unlimited' ? null : Number(connections) })

const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', async () => {
    try {
      const answer = await upstream.request({ path: req.url, method: req.method, headers: { 'content-type': 'application/json', authorization: req.headers.authorization ?? '' }, body: Buffer.concat(chunks) })
      res.writeHead(answer.statusCode, { 'content-type': answer.headers['content-type'] ?? 'application/octet-stream' })
      for await (const chunk of answer.body) if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
      res.end()
    } catch {
      res.destroy()
    }
  })
})
server.listen(Number(arg('port') ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })}\n`)
})
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))
setInterval(() => {
  if (process.ppid === 1) process.exit(0)
}, 1_000).unref()
