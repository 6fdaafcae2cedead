import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** The built CLI (`npm test` builds first). */
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the built CLI with only PATH and `env` in its environment; resolves whatever the exit code. */
export function runCli(env: Record<string, string>, ...args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}
