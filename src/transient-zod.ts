import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import type { z } from 'zod'

/** zod's namespace (`import { z } from 'zod'`), as `withZod` hands it over. */
export type Zod = typeof z

// What zod keeps on globalThis (one config and one schema registry for every copy of it in the process).
const ZOD_GLOBALS = ['__zod_globalConfig', '__zod_globalRegistry'] as const

/**
 * Runs `use` with zod, loaded for that call and let go after it: the configuration and the pricing files are
 * validated once, at start-up, and zod's modules (~3 MiB of heap, most of it locale text) would otherwise stay
 * loaded for the life of the process. Loaded again by a later call; what `use` returns must not be a schema.
 */
export function withZod<T>(use: (zod: Zod) => T): T {
  // A require of its own: the module a createRequire stands for lists what it loaded, so it must not outlive the call.
  const require = createRequire(import.meta.url)
  const created = ZOD_GLOBALS.filter((name) => !(name in globalThis))
  try {
    return use((require('zod') as { z: Zod }).z)
  } finally {
    const root = `${dirname(require.resolve('zod/package.json'))}/`
    for (const id of Object.keys(require.cache)) if (id.startsWith(root)) delete require.cache[id]
    for (const name of created) delete (globalThis as Record<string, unknown>)[name]
  }
}
