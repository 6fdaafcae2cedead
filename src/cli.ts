#!/usr/bin/env node
import { main } from './cli/program.js'

/** Entry of the `loopers` binary: runs the CLI, then lets the process end (or keeps it up for `serve`). */

// `loopers keys list | head` closes the pipe early: that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

const outcome = await main(process.argv)
if (outcome !== 'serving') {
  process.exitCode = outcome
  // Nothing should keep a one-shot command alive; if something does (a stray socket), do not hang the user's script.
  setTimeout(() => process.exit(outcome), 2_000).unref()
}
