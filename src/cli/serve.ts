import { ConfigError, loadConfig, loadDotEnv } from '../config.js'
import { withLazyBuiltins } from '../lazy-builtins.js'
import { reportError, serveFailed } from './errors.js'

/**
 * `loopers serve`: starts the proxy on the configuration of the environment and stops it on a signal.
 * `dotEnv`: the .env file read before, if any (logged). Throws a ConfigError or a CliError when it cannot start.
 */
export async function serve(dotEnv: string | null): Promise<void> {
  const config = loadConfig()
  // Start-up defers three built-ins its packages load but a proxy may never use: src/lazy-builtins.ts.
  await withLazyBuiltins(async () => {
    const { startServer, stopOnSignals } = await import('../server.js')
    const { createLogger } = await import('../logger.js')
    const logger = createLogger(config.logLevel)
    try {
      if (dotEnv !== null) logger.info({ file: dotEnv }, 'configuration read from .env too (variables already set win)')
      stopOnSignals(await startServer(config, logger), logger)
    } catch (err) {
      if (err instanceof ConfigError) throw err
      throw serveFailed(err instanceof Error ? (err.message.split('\n')[0] ?? err.name) : String(err), err)
    }
  })
}

/**
 * `loopers serve` with no flag or argument, as every launcher runs it, without the command-line parser: the
 * parser and the other commands' modules stay unloaded for the proxy's life. Reads ./.env as the parser's
 * path does; 'serving' once the proxy listens, or the exit code after reporting why it could not start.
 */
export async function serveOnly(): Promise<'serving' | number> {
  try {
    await serve(loadDotEnv())
    return 'serving'
  } catch (err) {
    return reportError(err, (text) => process.stderr.write(`${text}\n`))
  }
}
