/**
 * Loads the serve path's modules with the Node built-ins that three of its packages require at load time but
 * use only for a feature the proxy has not turned on (TLS to Redis, Fastify's own HTTPS and HTTP/2 servers,
 * undici's HTTP/2 client) replaced by stand-ins that load the built-in on first use. Loaded, node:http2,
 * node:https and node:tls (with what they load) hold ~2 MiB more resident for the process's life, most of it
 * the node binary's pages of their sources and code. Elsewhere each still loads as usual.
 */
import * as nodeModule from 'node:module'

/** Per package file (a path ending of its URL): the built-ins it requires whose first use can wait. */
const DEFERRED: ReadonlyArray<{ file: string; builtins: readonly string[] }> = [
  // `https.createServer` and `http2.createServer` run only with the `https` or `http2` option; the proxy passes its own server.
  { file: '/node_modules/fastify/lib/server.js', builtins: ['https', 'http2'] },
  // `tls.connect` runs only for a `rediss://` URL or the `tls` option.
  { file: '/node_modules/ioredis/built/connectors/StandaloneConnector.js', builtins: ['tls'] },
  { file: '/node_modules/ioredis/built/connectors/SentinelConnector/index.js', builtins: ['tls'] },
]

/**
 * undici's client requires its HTTP/2 half at load time, which reads node:http2's constants at once; it is
 * called only for an upstream that negotiates h2, which the proxy's Agent never asks for (no `allowH2`).
 */
const DEFERRED_FUNCTION = { parent: '/node_modules/undici/lib/dispatcher/client.js', specifier: './client-h2.js' }

const STAND_IN = new URL('./lazy-builtins.stand-in/', import.meta.url).href

/**
 * Runs `start` (which loads the serve path's modules: the server's, then its store's) with the stand-ins in place,
 * and its result; modules loaded after it resolve as usual. A runtime without module hooks (before Node 22.15) loads as usual.
 */
export async function withLazyBuiltins<T>(start: () => Promise<T>): Promise<T> {
  const registerHooks = (nodeModule as Partial<typeof nodeModule>).registerHooks
  if (registerHooks === undefined) return start()
  const hooks = registerHooks({ resolve: resolveLazily, load: loadStandIn })
  try {
    return await start()
  } finally {
    hooks.deregister()
  }
}

const resolveLazily: nodeModule.ResolveHookSync = (specifier, context, nextResolve) => {
  const parent = context.parentURL
  if (parent !== undefined) {
    const builtin = specifier.startsWith('node:') ? specifier.slice(5) : specifier
    for (const { file, builtins } of DEFERRED) {
      if (parent.endsWith(file) && builtins.includes(builtin)) {
        return { url: `${STAND_IN}builtin-${builtin}.cjs`, format: 'commonjs', shortCircuit: true }
      }
    }
    if (specifier === DEFERRED_FUNCTION.specifier && parent.endsWith(DEFERRED_FUNCTION.parent)) {
      const real = nextResolve(specifier, context).url
      return { url: `${STAND_IN}function.cjs?${encodeURIComponent(real)}`, format: 'commonjs', shortCircuit: true }
    }
  }
  return nextResolve(specifier, context)
}

const loadStandIn: nodeModule.LoadHookSync = (url, context, nextLoad) => {
  if (!url.startsWith(STAND_IN)) return nextLoad(url, context)
  const name = url.slice(STAND_IN.length)
  if (name.startsWith('builtin-')) {
    const builtin = JSON.stringify(`node:${name.slice('builtin-'.length, -'.cjs'.length)}`)
    return { format: 'commonjs', source: builtinStandIn(builtin), shortCircuit: true }
  }
  const real = JSON.stringify(decodeURIComponent(name.slice(name.indexOf('?') + 1)))
  return { format: 'commonjs', source: functionStandIn(real), shortCircuit: true }
}

/** A module whose exports read through to the built-in, loaded at the first read of any of them. */
function builtinStandIn(builtin: string): string {
  return `'use strict'
let real = null
const load = () => (real ??= process.getBuiltinModule(${builtin}))
module.exports = new Proxy({}, {
  get: (_, key) => load()[key],
  has: (_, key) => key in load(),
  ownKeys: () => Reflect.ownKeys(load()),
  getOwnPropertyDescriptor: (_, key) => {
    const descriptor = Reflect.getOwnPropertyDescriptor(load(), key)
    return descriptor === undefined ? undefined : { ...descriptor, configurable: true }
  },
})
`
}

/** A module whose export is a function that loads the real module (whose export is that function) when first called. */
function functionStandIn(realUrl: string): string {
  return `'use strict'
const { fileURLToPath } = require('node:url')
let real = null
module.exports = function deferred(...args) {
  real ??= require(fileURLToPath(${realUrl}))
  return real.apply(this, args)
}
`
}
