import type { ChildProcess, StdioOptions } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/**
 * Server children started on port 0 report the ports they listen on (test/support/listen-report.mjs) on
 * descriptor 3: no probed "free" port that another process can take before the child binds it.
 */
export const LISTEN_REPORT = fileURLToPath(new URL('./listen-report.mjs', import.meta.url))

/** Node arguments that load the reporter: put them before the script. */
export const REPORT_LISTEN_ARGS: readonly string[] = ['--import', LISTEN_REPORT]

/** stdio for such a child: stdout and stderr piped, descriptor 3 the report pipe. */
export const REPORT_LISTEN_STDIO: StdioOptions = ['ignore', 'pipe', 'pipe', 'pipe']

/**
 * The first `count` ports `child` reports, in listening order. Rejects when the child exits first or
 * after `timeoutMs`; `output` supplies what the child wrote, for the error message.
 */
export function listenPorts(child: ChildProcess, count: number, timeoutMs: number, output: () => string = () => ''): Promise<number[]> {
  const pipe = child.stdio[3]
  if (pipe === null || pipe === undefined || !('on' in pipe)) return Promise.reject(new Error('the child has no report pipe on descriptor 3 (use REPORT_LISTEN_STDIO)'))
  return new Promise((resolve, reject) => {
    const ports: number[] = []
    let text = ''
    const finish = (error: Error | null): void => {
      clearTimeout(timer)
      pipe.off('data', onData)
      child.off('exit', onExit)
      if (error === null) resolve(ports.slice(0, count))
      else reject(error)
    }
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8')
      let end = text.indexOf('\n')
      while (end >= 0) {
        const port = (JSON.parse(text.slice(0, end)) as { port: number }).port
        text = text.slice(end + 1)
        ports.push(port)
        end = text.indexOf('\n')
      }
      if (ports.length >= count) finish(null)
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => finish(new Error(`the server exited (${code ?? signal}) before listening: ${output().trim()}`))
    const timer = setTimeout(() => finish(new Error(`the server did not listen within ${timeoutMs} ms: ${output().trim()}`)), timeoutMs)
    pipe.on('data', onData)
    child.once('exit', onExit)
    if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode)
  })
}
