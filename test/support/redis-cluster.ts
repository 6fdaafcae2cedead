import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './redis.js'

const run = promisify(execFile)

export interface TestCluster {
  /** `host:port` of every master, as REDIS_CLUSTER_NODES takes them. */
  nodes: string[]
  stop(): Promise<void>
}

/**
 * A local Redis Cluster of `masters` masters on free loopback ports, slots spread by
 * `redis-cli --cluster create`, as an operator would build one.
 */
export async function startRedisCluster(masters = 3): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'loopers-cluster-'))
  const children: ChildProcess[] = []
  const nodes: string[] = []
  const stop = async (): Promise<void> => {
    for (const child of children) child.kill('SIGKILL')
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startNode(dir, children))
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 20_000 })
    for (const node of nodes) {
      await waitFor(async () => (await cli(node, 'CLUSTER', 'INFO')).includes('cluster_state:ok'), `${node} cluster state ok`)
    }
    return { nodes, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * One cluster-enabled redis-server on a probed free port. Another process may take the port before the
 * node binds it: then the node exits, and another port is tried (only an answer from this node's pid counts).
 */
async function startNode(dir: string, children: ChildProcess[]): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir],
      { stdio: 'ignore' },
    )
    children.push(child)
    const node = `127.0.0.1:${port}`
    const own = async (): Promise<boolean> => child.exitCode !== null || child.signalCode !== null || Number(/process_id:(\d+)/.exec(await cli(node, 'INFO', 'server'))?.[1]) === child.pid
    await waitFor(own, `${node} to answer`)
    if (child.exitCode === null && child.signalCode === null) return node
    if (attempt >= 3) throw new Error(`redis-server on ${node} exited on start (${child.exitCode ?? child.signalCode})`)
  }
}

async function cli(node: string, ...args: string[]): Promise<string> {
  const [host, port] = node.split(':') as [string, string]
  try {
    return (await run('redis-cli', ['-h', host, '-p', port, ...args], { timeout: 2_000 })).stdout.trim()
  } catch {
    return ''
  }
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
