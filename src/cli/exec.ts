import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import type { Command } from 'commander'
import { loadExecEnvironment } from '../config.js'
import { CliError, usageError } from './errors.js'
import { EXEC_PROVIDERS, buildExecEnv, parseExecFlags, type ExecFlags } from './exec-env.js'

/** `loopers exec … -- <command> [args…]`: runs an agent with its SDKs pointed at Loopers, and exits as it exits. */

/** The signals passed on to the child. */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
/** Signals a terminal sends to its whole foreground process group: the child already has them when stdin is a TTY. */
const FROM_TERMINAL: ReadonlySet<string> = new Set(['SIGINT', 'SIGHUP'])

/** Carries the child's exit status out of the command line: no message, just the code `loopers` exits with. */
class ChildExit extends CliError {
  constructor(code: number) {
    super('', code)
    this.name = 'ChildExit'
  }
}

/** Adds `exec` to the program. Its action ends by throwing ChildExit with the child's code (128 + n when killed by signal n). */
export function addExecCommand(program: Command): void {
  program
    .command('exec')
    .description("run a command with its SDKs' base URLs pointed at Loopers (path auth); exits with its exit code")
    .usage('[options] -- <command> [args…]')
    .option('--key <lp-key>', 'the proxy key (default: LOOPERS_PROXY_KEY)')
    .option('--url <url>', 'the proxy (default: LOOPERS_PROXY_URL, else http://localhost:8080)')
    .option('--session <id>', 'make this run one budgeted session')
    .option('--session-budget <usd>', "the session's budget (lowers the key's default, never raises it)")
    .option('--session-max-steps <n>', "the session's step limit")
    .option('--provider <id>', `set only this provider's variables, and LLM_BASE_URL (${EXEC_PROVIDERS.join(', ')})`)
    .argument('<command...>', 'the command to run, after --')
    .action(async (command: string[], flags: ExecFlags) => {
      const environment = loadExecEnvironment()
      const target = parseExecFlags(flags, environment)
      const [file, ...args] = command
      if (file === undefined) throw usageError('exec needs a command after --')
      throw new ChildExit(await runChild(file, args, buildExecEnv(target, environment.inherited)))
    })
}

/**
 * Runs `file` with `args` and `env`, stdio shared, passing SIGINT, SIGTERM and SIGHUP on; resolves with its exit code,
 * 128 + the signal number when a signal ended it, 127 when the command is not found, 126 when it cannot be run.
 */
function runChild(file: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env, stdio: 'inherit' })
    const interactive = process.stdin.isTTY === true
    const forward = (signal: NodeJS.Signals): void => {
      // Ctrl-C or a hang-up already reached the child through the terminal; sending it again would count twice.
      if (interactive && FROM_TERMINAL.has(signal)) return
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    }
    for (const signal of FORWARDED) process.on(signal, forward)
    const done = (code: number): void => {
      for (const signal of FORWARDED) process.off(signal, forward)
      resolve(code)
    }
    child.once('error', (error: NodeJS.ErrnoException) => {
      const missing = error.code === 'ENOENT'
      process.stderr.write(`loopers: ${missing ? 'command not found' : 'cannot run'}: ${file}${missing ? '' : ` (${error.code ?? error.message})`}\n`)
      done(missing ? 127 : 126)
    })
    child.once('exit', (code, signal) => {
      if (signal !== null) done(128 + (constants.signals[signal] ?? 0))
      else done(code ?? 1)
    })
  })
}
