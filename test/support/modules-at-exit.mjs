// Preloaded with `node --import` (NODE_OPTIONS) into a process a test starts: as it exits, writes one line to stderr,
// `modules-at-exit {"packages":[…]}`, the packages of node_modules whose CommonJS files it loaded, so a test can check
// what a process held for its life.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
process.once('exit', () => {
  const packages = new Set()
  for (const id of Object.keys(require.cache)) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(id)
    if (match !== null) packages.add(match[1])
  }
  process.stderr.write(`modules-at-exit ${JSON.stringify({ packages: [...packages].sort() })}\n`)
})
