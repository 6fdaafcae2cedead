import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { environmentHelp, loadConfig, loadDotEnv } from '../config.js'
import { PROVIDER_IDS } from '../providers/types.js'
import { DEFAULT_LOOP_LIMIT, DEFAULT_LOOP_WINDOW_SECONDS } from '../loop/rule.js'
import { budgetStatus, parseBudgetFlags, setBudget, type BudgetFlags } from './budget.js'
import { EXIT_USAGE, reportError, usageError } from './errors.js'
import { budgetHistory, DAYS_HINT, parseDays } from './history.js'
import { DEFAULT_HISTORY_DAYS, HISTORY_DAYS } from '../budget/history.js'
import { addExecCommand } from './exec.js'
import { createKey, listKeys, parseName, parseProviders, revokeKey } from './keys.js'
import { serve } from './serve.js'
import { storeNote, withKeyAdmin } from './store.js'
import { USE_STRING_PERIODS_HELP, useStringPeriodsCommand } from './store-layout.js'

/** The `loopers` command line (CONTRACT §3). Argument parsing and error reporting only; commands live beside it. */

/** What `main` leaves behind: an exit code, or `serving` when the proxy runs and the process must stay up. */
type Outcome = number | 'serving'

interface Io {
  out: (text: string) => void
  err: (text: string) => void
}

const defaultIo: Io = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
}

/** Runs the CLI on `argv` (process.argv form); reports every error as one stderr line per problem, never a stack. */
export async function main(argv: readonly string[]): Promise<Outcome> {
  let outcome: Outcome = 0
  const program = buildProgram(defaultIo, () => {
    outcome = 'serving'
  })
  try {
    await program.parseAsync([...argv])
    return outcome
  } catch (err) {
    return report(err, defaultIo)
  }
}

function report(err: unknown, io: Io): number {
  // Commander has already printed its own message (through outputError below).
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE
  return reportError(err, io.err)
}

function buildProgram(io: Io, onServing: () => void): Command {
  /** The .env file read before the command ran, if any. */
  let dotEnv: string | null = null
  const program = new Command('loopers')
  // Set before any subcommand is added: commander copies these settings into each subcommand.
  program
    .exitOverride()
    .configureOutput({
      writeOut: (str) => process.stdout.write(str),
      writeErr: (str) => process.stderr.write(str),
      // One line per error: commander puts its "(Did you mean …?)" hint on a line of its own.
      outputError: (str, write) => write(`loopers: ${str.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}\n`),
    })
    .showSuggestionAfterError(true)
  program
    .description('A reverse proxy that enforces hard dollar budgets on LLM API keys.')
    .version(readVersion(), '-V, --version')
    .addHelpText(
      'after',
      '\nConfiguration comes from the environment (LOOPERS_DB or REDIS_URL, PORT, …), for the proxy and the CLI alike,\n' +
        'and from a .env file in the working directory when there is one (variables already set win).\n' +
        '`loopers serve --help` lists every variable.',
    )
    // Every command but the self-contained demo reads ./.env, so the CLI and the proxy use the same store.
    .hook('preAction', (_program, command) => {
      if (command.name() !== 'demo') dotEnv = loadDotEnv()
    })

  /** Human output is followed by the store it worked on, on stderr so stdout stays what scripts parse; JSON stays as it is. */
  const out = (text: string, json: boolean | undefined): void => {
    io.out(text)
    if (json !== true) io.err(storeNote(loadConfig()))
  }

  program
    .command('serve')
    .description('start the proxy')
    .addHelpText('after', `\nEnvironment (read from ./.env too; variables already set win), [default]:\n${environmentHelp()}`)
    .action(async () => {
      await serve(dotEnv)
      onServing()
    })

  program
    .command('demo')
    .description('a self-contained run against a built-in fake provider: a refusal and a cut-off, no provider key, no money')
    .action(async () => {
      const { runDemo } = await import('./demo.js')
      await runDemo(io.out)
    })

  const keys = program.command('keys').description('create, list and revoke proxy keys')
  const create = keys
    .command('create')
    .description('create a proxy key; its raw value is printed once and never stored')
    .requiredOption('--name <name>', 'a label for the key')
    .requiredOption('--provider <ids>', `allowed providers, comma-separated (${PROVIDER_IDS.join(', ')})`, collect)
  addLimitOptions(create)
    .option('--json', 'print one JSON object')
    .option('--env', 'print LOOPERS_KEY=… and LOOPERS_HASH=… lines (the usual text goes to stderr)')
    .action(async (opts: BudgetFlags & { name: string; provider: string[]; json?: boolean; env?: boolean }) => {
      const name = parseName(opts.name)
      const providers = parseProviders(opts.provider)
      const change = parseBudgetFlags(opts, true)
      if (opts.json === true && opts.env === true) throw usageError('--json and --env cannot be used together')
      const format = opts.json === true ? 'json' : opts.env === true ? 'env' : 'human'
      const text = await withKeyAdmin(loadConfig(), (admin) => createKey(admin, name, providers, change, format, io.err))
      out(text, format !== 'human')
    })
  keys
    .command('list')
    .description('list every key (hash, name, providers, active, created)')
    .option('--json', 'print a JSON array')
    .action(async (opts: { json?: boolean }) => {
      out(await withKeyAdmin(loadConfig(), (admin) => listKeys(admin, opts.json === true)), opts.json)
    })
  keys
    .command('revoke')
    .description('revoke a key: its next request is refused')
    .argument('<key>', KEY_ARG)
    .action(async (hash: string) => {
      out(await withKeyAdmin(loadConfig(), (admin) => revokeKey(admin, hash)), false)
    })

  const budget = program.command('budget').description("set and inspect a key's budget")
  const set = budget
    .command('set')
    .description('set limits in USD; 0 removes a limit (at least one flag)')
    .argument('<key>', KEY_ARG)
  addLimitOptions(set)
    .option('--json', 'print the resulting limits as JSON')
    .action(async (hash: string, opts: BudgetFlags & { json?: boolean }) => {
      const change = parseBudgetFlags(opts)
      out(await withKeyAdmin(loadConfig(), (admin) => setBudget(admin, hash, change, opts.json === true)), opts.json)
    })
  budget
    .command('status')
    .description('show limit, spent, held and remaining of every window')
    .argument('<key>', KEY_ARG)
    .option('--json', 'print {hash, windows} as JSON')
    .action(async (hash: string, opts: { json?: boolean }) => {
      out(await withKeyAdmin(loadConfig(), (admin) => budgetStatus(admin, hash, opts.json === true)), opts.json)
    })

  budget
    .command('history')
    .description(`settled spend per UTC day (kept ${HISTORY_DAYS} days), oldest first`)
    .argument('<key>', KEY_ARG)
    .option('--days <n>', `how many days up to today (1-${HISTORY_DAYS}, default ${DEFAULT_HISTORY_DAYS})`)
    .option('--json', 'print {hash, days: [{date, spent_usd}]} as JSON')
    .action(async (ref: string, opts: { days?: string; json?: boolean }) => {
      if (parseDays(opts.days) === null) throw usageError(DAYS_HINT)
      out(await withKeyAdmin(loadConfig(), (admin) => budgetHistory(admin, ref, opts.days, opts.json === true)), opts.json)
    })

  const store = program.command('store').description('maintain the budget store')
  store
    .command('use-string-periods')
    .description("Redis: keep each key's five current periods in one string (fewer Redis commands per request)")
    .addHelpText('after', `\n${USE_STRING_PERIODS_HELP}`)
    .action(async () => {
      out(await withKeyAdmin(loadConfig(), (_admin, redis) => useStringPeriodsCommand(redis)), false)
    })

  addExecCommand(program)
  return program
}

/** The limit flags of `budget set`, which `keys create` takes too. */
function addLimitOptions(command: Command): Command {
  return command
    .option('--minute <usd>', 'limit per UTC minute')
    .option('--hourly <usd>', 'limit per UTC hour')
    .option('--daily <usd>', 'limit per UTC day')
    .option('--weekly <usd>', 'limit per ISO week (from Monday 00:00 UTC)')
    .option('--monthly <usd>', 'limit per UTC calendar month')
    .option('--session <usd>', 'default budget of every session')
    .option('--session-max-steps <n>', 'default step limit of every session')
    .option('--rpm <n>', 'at most this many requests per UTC minute (0 removes the limit)')
    .option('--loop-limit <n>', `repeats of one step a conversation may make before it is refused (default ${DEFAULT_LOOP_LIMIT}; 0 turns the loop guard off)`)
    .option('--loop-window <seconds>', `the window in which repeats count (default ${DEFAULT_LOOP_WINDOW_SECONDS}; 0 goes back to it)`)
    .option('--unlimited', 'allow the key to spend without any window limit (a key with none is refused: budget_not_set)')
}

const KEY_ARG = 'the key: its hash, a unique hash prefix (8+ hex digits) or its name'

/** Accumulates a repeatable option's values. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}
