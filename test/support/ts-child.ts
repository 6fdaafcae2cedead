/**
 * The start of a `node --experimental-transform-types -e` script that imports src/ modules as TypeScript: their
 * `./x.js` specifiers resolve to `./x.ts` (as src/tokens/worker.ts does for its worker under the tests). A fresh
 * process, for what this test runner's own imports may already have loaded or allocated.
 */
export const TS_CHILD_PRELUDE = `
const { registerHooks } = require('node:module')
registerHooks({
  resolve(specifier, context, next) {
    try { return next(specifier, context) } catch (error) {
      if (specifier.startsWith('.') && specifier.endsWith('.js')) return next(specifier.slice(0, -3) + '.ts', context)
      throw error
    }
  },
})
`
