import { ConfigError } from '../config.js'

/**
 * Errors the CLI reports to the user: one line on stderr after "loopers: ", never a stack.
 * Exit codes: 1 for a failure at run time (unknown key, store, configuration), 2 for a usage error.
 */

export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number = EXIT_FAILURE, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

/** A flag or argument the user got wrong (bad amount, unknown provider, missing flag). Exit 2. */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE)
}

/** No key record has this hash. Exit 1. */
export function unknownKey(hash: string): CliError {
  return new CliError(`unknown key hash ${hash}`)
}

/** The budget store could not be reached or did not answer. Exit 1. */
export function storeUnreachable(where: string, reason: string, cause?: unknown, check = 'REDIS_URL'): CliError {
  return new CliError(
    `cannot reach the budget store at ${where} (${reason}); check ${check}`,
    EXIT_FAILURE,
    { cause },
  )
}

/** The server could not start (port in use, bad pricing file, …). Exit 1. */
export function serveFailed(reason: string, cause?: unknown): CliError {
  return new CliError(`cannot start the proxy: ${reason}`, EXIT_FAILURE, { cause })
}

/** Reports `err` as the CLI does (one `loopers: …` line per problem through `write`, never a stack); its exit code. */
export function reportError(err: unknown, write: (line: string) => void): number {
  if (err instanceof ConfigError) {
    for (const problem of err.problems) write(`loopers: bad configuration: ${problem}`)
    return EXIT_FAILURE
  }
  if (err instanceof CliError) {
    if (err.message !== '') write(`loopers: ${err.message}`)
    return err.exitCode
  }
  const message = err instanceof Error ? err.message : String(err)
  write(`loopers: ${message.split('\n')[0] ?? 'unexpected error'}`)
  return EXIT_FAILURE
}
