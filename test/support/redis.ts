/**
 * A real Redis for tests, started by the tests themselves: a testcontainers container when a Docker
 * engine is reachable, otherwise a `redis-server` child process on a free port. Never skips: with
 * neither available it fails with instructions. LOOPERS_TEST_REDIS=binary|container forces one path.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestRedis {
  url: string
  port: number
  /** Stops Redis for good and removes what it wrote (unless `dir` was given). */
  stop(): Promise<void>
  /** Freezes Redis (SIGSTOP / docker pause): connections stay open, nothing answers. */
  pause(): void
  resume(): void
  /** Kills Redis abruptly (SIGKILL); `restart` brings it back on the same port. */
  kill(): Promise<void>
  restart(): Promise<void>
}

export interface StartRedisOptions {
  /** Persist every write (appendfsync always), so data survives kill + restart. */
  appendonly?: boolean
  /** Data directory; a fresh temporary one by default. */
  dir?: string
  /** A one-node Redis Cluster owning all 16384 slots: cross-slot access fails as in production. */
  cluster?: boolean
}

const NOT_FOUND =
  'No Redis for the tests: redis-server is not on PATH and no Docker engine is reachable. ' +
  'Install it (`apt-get install redis-server`) or start a Docker engine.'
const START_TIMEOUT_MS = 10_000

export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const forced = process.env.LOOPERS_TEST_REDIS
  if (forced === 'binary') return startBinary(opts)
  if (forced === 'container' || (await dockerReachable())) return startContainer(opts)
  return startBinary(opts)
}

/** Asks testcontainers for a container runtime, giving up after 3 s. */
async function dockerReachable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 3_000).unref())
    await Promise.race([getContainerRuntimeClient(), timeout])
    return true
  } catch {
    return false
  }
}

/** `announce`: the address clients reach a cluster node at (a lone node does not know its own). */
function serverArgs(port: number, dir: string, opts: StartRedisOptions, announce?: { host: string; port: number }): string[] {
  return [
    '--port', String(port),
    '--save', '',
    '--dir', dir,
    '--appendonly', opts.appendonly === true ? 'yes' : 'no',
    ...(opts.appendonly === true ? ['--appendfsync', 'always'] : []),
    ...(opts.cluster === true ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] : []),
    ...(opts.cluster === true && announce !== undefined
      ? ['--cluster-announce-ip', announce.host, '--cluster-announce-port', String(announce.port)]
      : []),
  ]
}

/** Gives a fresh cluster node every slot (a restarted one keeps them in nodes.conf) and waits for state ok. */
async function assignAllSlots(host: string, port: number): Promise<void> {
  const { Redis } = await import('ioredis')
  const client = new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 0 })
  client.on('error', () => {})
  try {
    await client.connect()
    const info = String(await client.call('CLUSTER', 'INFO'))
    if (info.includes('cluster_slots_assigned:0')) await client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
    const deadline = Date.now() + START_TIMEOUT_MS
    while (!String(await client.call('CLUSTER', 'INFO')).includes('cluster_state:ok')) {
      if (Date.now() > deadline) throw new Error(`redis cluster on ${host}:${port} did not reach state ok`)
      await new Promise((r) => setTimeout(r, 20))
    }
  } finally {
    client.disconnect()
  }
}

// ---- redis-server child process -----------------------------------------------------------------

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

async function startBinary(opts: StartRedisOptions): Promise<TestRedis> {
  const ownDir = opts.dir === undefined ? mkdtempSync(join(tmpdir(), 'loopers-redis-')) : null
  const dir = opts.dir ?? (ownDir as string)
  let port = 0
  let child: ChildProcess | null = null
  // A free port can be taken between probing and binding: try a few.
  for (let attempt = 1; child === null; attempt++) {
    port = await freePort()
    try {
      child = await spawnServer(port, dir, opts)
    } catch (err) {
      if (attempt >= 3 || !String(err).includes('Address already in use')) throw err
    }
  }
  let current: ChildProcess | null = child
  const kill = async (): Promise<void> => {
    if (current === null) return
    const dying = current
    current = null
    dying.kill('SIGKILL') // also ends a SIGSTOPped process
    if (dying.exitCode === null && dying.signalCode === null) await new Promise((r) => dying.once('exit', r))
  }
  const signal = (sig: NodeJS.Signals): void => {
    if (current === null) throw new Error('test redis is not running')
    current.kill(sig)
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    kill,
    restart: async () => {
      await kill()
      current = await spawnServer(port, dir, opts)
    },
    stop: async () => {
      await kill()
      if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true })
    },
  }
}

async function spawnServer(port: number, dir: string, opts: StartRedisOptions): Promise<ChildProcess> {
  // A lone cluster node does not know its own address: announce it, or CLUSTER SLOTS names no host.
  const args = [...serverArgs(port, dir, opts, { host: '127.0.0.1', port }), '--bind', '127.0.0.1']
  const child = spawn('redis-server', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  let output = ''
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4_000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new Error(NOT_FOUND) : err),
    )
    child.once('exit', (code, sig) => reject(new Error(`redis-server exited (${code ?? sig}) on start: ${output.trim()}`)))
  })
  exited.catch(() => {}) // observed below; also silences the rejection after a normal later exit
  child.once('exit', () => children.delete(child))
  try {
    // Another process may have taken the probed port first: only a PONG from this child counts.
    await Promise.race([waitForPing('127.0.0.1', port, child.pid), exited])
    if (opts.cluster === true) await assignAllSlots('127.0.0.1', port)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return child
}

// ---- container (Docker engine) ------------------------------------------------------------------

async function startContainer(opts: StartRedisOptions): Promise<TestRedis> {
  const { GenericContainer, Wait } = await import('testcontainers')
  const port = await freePort()
  // With appendonly, data must outlive the container across kill + restart: keep it on the host.
  const ownDir = opts.dir === undefined && opts.appendonly === true ? mkdtempSync(join(tmpdir(), 'loopers-redis-')) : null
  const dir = opts.dir ?? ownDir ?? undefined
  const { getContainerRuntimeClient } = await import('testcontainers')
  const host = (await getContainerRuntimeClient()).info.containerRuntime.host
  const start = async () => {
    let c = new GenericContainer('redis:7-alpine')
      .withExposedPorts({ container: 6379, host: port })
      // cluster-announce-ip takes an IP address.
      .withCommand(['redis-server', ...serverArgs(6379, '/data', opts, { host: host === 'localhost' ? '127.0.0.1' : host, port })])
      .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    if (dir !== undefined) c = c.withBindMounts([{ source: dir, target: '/data' }])
    const started = await c.start()
    if (opts.cluster === true) await assignAllSlots(host, port)
    return started
  }
  let container: Awaited<ReturnType<typeof start>> | null = await start()
  const docker = (verb: 'pause' | 'unpause'): void => {
    if (container === null) throw new Error('test redis is not running')
    try {
      execFileSync('docker', [verb, container.getId()], { stdio: 'ignore' })
    } catch (err) {
      throw new Error(`\`docker ${verb}\` failed (is the docker CLI installed?): ${String(err)}`)
    }
  }
  const kill = async (): Promise<void> => {
    if (container === null) return
    const dying = container
    container = null
    await dying.stop({ timeout: 0 })
  }
  return {
    url: `redis://${host}:${port}`,
    port,
    pause: () => docker('pause'),
    resume: () => docker('unpause'),
    kill,
    restart: async () => {
      await kill()
      container = await start()
      await waitForPing(host, port)
    },
    stop: async () => {
      await kill()
      // The container's redis user may own the files now; a leftover temp dir is harmless.
      try {
        if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true })
      } catch {}
    },
  }
}

// ---- helpers ------------------------------------------------------------------------------------

/** A port that was free a moment ago: bind port 0 on 127.0.0.1, read it, close. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/**
 * Resolves once Redis answers PING with PONG (and, given `pid`, says in INFO that it is that process);
 * rejects after START_TIMEOUT_MS.
 */
async function waitForPing(host: string, port: number, pid?: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if ((await pingOnce(host, port)) && (pid === undefined || (await processIdOf(host, port)) === pid)) return
    if (Date.now() > deadline) throw new Error(`redis on ${host}:${port} did not answer PING within ${START_TIMEOUT_MS} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The `process_id` a Redis reports in INFO server; null when it does not answer. */
function processIdOf(host: string, port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    let reply = ''
    const done = (pid: number | null): void => {
      socket.destroy()
      resolve(pid)
    }
    socket.setTimeout(500, () => done(null))
    socket.once('error', () => done(null))
    socket.once('connect', () => socket.write('INFO server\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      const match = /process_id:(\d+)\r\n/.exec(reply)
      if (match !== null) done(Number(match[1]))
      else if (reply.startsWith('-')) done(null)
    })
  })
}

function pingOnce(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    let reply = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}
