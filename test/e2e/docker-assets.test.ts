import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { validate, ValidationSeverity } from 'dockerfile-utils'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import {
  assembleFinalStage,
  execForm,
  isDockerIgnored,
  parseCopy,
  parseDockerfile,
  parseHealthcheck,
  publishedPorts,
  readDockerignore,
  service,
  stageEnv,
  type ComposeFile,
  type Stage,
} from '../support/docker-files.js'
import { freePort, startRedis, type TestRedis } from '../support/redis.js'

/**
 * The Docker assets, proved as far as a machine without a Docker engine allows: the compose file
 * validates (`docker-compose config`), the Dockerfile lints, and the image's own entry script, CMD,
 * HEALTHCHECK and file layout run here against a Redis started with the compose file's own command.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8')
const TEST_PASSWORD = 'dockerAssetsTestPassword0123456789'
const KEY_FORMAT = /^lp-[A-Za-z0-9]{43}$/
// The image's node is on PATH as `node`; make sure that is this Node here too.
const PATH = [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter)

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(file: string, args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: { PATH, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error(`${file} is not installed${file === 'docker-compose' ? ': apt-get install docker-compose (.ci/run does)' : ''}`))
        return
      }
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}

const scratch = mkdtempSync(join(tmpdir(), 'loopers-docker-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** `docker-compose config` of the repository's file with `.env` holding `envText` (and nothing from this process). */
async function composeConfig(envText: string): Promise<Run> {
  const dir = mkdtempSync(join(scratch, 'compose-'))
  writeFileSync(join(dir, '.env'), envText)
  return run('docker-compose', ['--env-file', join(dir, '.env'), '-f', join(ROOT, 'docker-compose.yml'), 'config'], { HOME: dir })
}

const stages: Stage[] = parseDockerfile(read('Dockerfile'))
const runtime = stages[stages.length - 1]!
const instructionsOf = (stage: Stage, keyword: string): string[] => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args)
const dockerHealthcheck = parseHealthcheck(instructionsOf(runtime, 'HEALTHCHECK')[0] ?? 'missing')
const dockerCmd = execForm(instructionsOf(runtime, 'CMD')[0] ?? 'missing')

describe('docker-compose.yml', () => {
  let rendered: ComposeFile

  beforeAll(async () => {
    const result = await composeConfig(`REDIS_PASSWORD=${TEST_PASSWORD}\n`)
    expect(result.code, result.stderr).toBe(0)
    rendered = parseYaml(result.stdout) as ComposeFile
  })

  it('validates offline: a password-protected, persistent Redis that only the loopers container reaches', () => {
    const redis = service(rendered, 'redis')
    expect(redis.image).toMatch(/^redis:7(\.|-|$)/)
    expect(redis.command).toEqual(['redis-server', '--requirepass', TEST_PASSWORD, '--appendonly', 'yes'])
    expect(redis.volumes).toContainEqual(expect.stringMatching(/^redis-data:\/data(:rw)?$/))
    expect(Object.keys(rendered.volumes ?? {})).toContain('redis-data')
    expect(redis.ports ?? []).toEqual([])
    expect(redis.healthcheck?.test.join(' ')).toMatch(/redis-cli/)
    expect(redis.restart).toBe('unless-stopped')
  })

  it('publishes the proxy on every interface and the admin port on the host loopback only', () => {
    const loopers = service(rendered, 'loopers')
    const ports = publishedPorts(loopers)
    expect(ports).toContainEqual({ hostIp: '', published: 8080, target: 8080 })
    const admin = ports.filter((p) => p.target === 9090)
    expect(admin).toEqual([{ hostIp: '127.0.0.1', published: 9090, target: 9090 }])
    const env = loopers.environment ?? {}
    expect(env.REDIS_URL).toBe(`redis://:${TEST_PASSWORD}@redis:6379`)
    // Inside the container: the loopback-published port must reach the admin listener.
    expect(env.LOOPERS_ADMIN_HOST).toBe('0.0.0.0')
    expect([env.PORT, env.LOOPERS_ADMIN_PORT]).toEqual(['8080', '9090'])
    expect(loopers.depends_on).toEqual({ redis: { condition: 'service_healthy' } })
    expect(typeof loopers.build === 'string' ? loopers.build : loopers.build?.context).toBe(ROOT.replace(/\/$/, ''))
    expect(loopers.restart).toBe('unless-stopped')
    // One health probe for both: the Dockerfile's, which the image tests below run.
    expect(loopers.healthcheck?.test).toEqual(['CMD', ...dockerHealthcheck.command])
  })

  it('refuses to start without REDIS_PASSWORD and says where to set it', async () => {
    for (const envText of ['', 'REDIS_PASSWORD=\n']) {
      const result = await composeConfig(envText)
      expect(result.code).not.toBe(0)
      expect(result.stderr).toContain('set REDIS_PASSWORD in .env')
    }
  })

  it('says docker compose, with v1 docker-compose noted, and how to generate the password', () => {
    const header = read('docker-compose.yml').split('\n').filter((l) => l.startsWith('#')).join('\n')
    expect(header).toMatch(/^#\s+docker compose up -d$/m)
    expect(header).not.toMatch(/^#\s+docker-compose /m)
    expect(header).toContain('openssl rand -hex 32')
  })

  it("the README's Compose set-up lines make a .env with a generated password that compose accepts", async () => {
    const readme = read('README.md')
    const section = readme.slice(readme.indexOf('### With Docker Compose'))
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
    const setup = block.replace(/\\\n/g, ' ').split('\n').filter((line) => /^(cp|sed) /.test(line))
    expect(setup).toHaveLength(2)
    expect(block).toMatch(/^docker compose up -d/m)
    const dir = mkdtempSync(join(scratch, 'readme-'))
    writeFileSync(join(dir, '.env.example'), read('.env.example'))
    const made = await new Promise<Run>((resolve) =>
      execFile('bash', ['-euc', setup.join('\n')], { cwd: dir, env: { PATH } }, (err, stdout, stderr) => resolve({ code: err === null ? 0 : 1, stdout, stderr })),
    )
    expect(made.code, made.stderr).toBe(0)
    const envText = readFileSync(join(dir, '.env'), 'utf8')
    const password = /^REDIS_PASSWORD=(.*)$/m.exec(envText)?.[1] ?? ''
    expect(password).toMatch(/^[0-9a-f]{64}$/)
    const token = /^LOOPERS_ADMIN_TOKEN=(.*)$/m.exec(envText)?.[1] ?? ''
    expect(token).toMatch(/^[0-9a-f]{64}$/)
    expect(token).not.toBe(password)
    expect(readdirSync(dir).sort()).toEqual(['.env', '.env.example'])
    const result = await composeConfig(envText)
    expect(result.code, result.stderr).toBe(0)
    expect(service(parseYaml(result.stdout) as ComposeFile, 'loopers').environment?.REDIS_URL).toBe(`redis://:${password}@redis:6379`)
  })

  it('holds no secret: every credential comes from .env', () => {
    const raw = parseYaml(read('docker-compose.yml')) as ComposeFile
    for (const [name, svc] of Object.entries(raw.services)) {
      for (const [variable, value] of Object.entries(svc.environment ?? {})) {
        if (!/KEY|SECRET|TOKEN|PASSWORD|AUTH|REDIS_URL/.test(variable)) continue
        expect(String(value), `${name}.${variable}`).toMatch(/\$\{(REDIS_PASSWORD|[A-Z0-9_]+:-)[^}]*\}/)
        expect(String(value).replace(/\$\{[^}]*\}/g, ''), `${name}.${variable}`).toMatch(/^(redis:\/\/:@redis:6379)?$/)
      }
      const command = (svc.command ?? []).join(' ')
      if (command.includes('--requirepass')) expect(command).toMatch(/--requirepass \$\{REDIS_PASSWORD:\?/)
    }
    expect(read('docker-compose.yml')).not.toMatch(/\b(sk-|lp-|AKIA)[A-Za-z0-9]{8,}/)
  })
})

describe('Dockerfile', () => {
  it('lints clean (dockerfile-utils, every rule an error)', () => {
    const settings = Object.fromEntries(
      ['deprecatedMaintainer', 'directiveCasing', 'emptyContinuationLine', 'instructionCasing', 'instructionCmdMultiple',
        'instructionEntrypointMultiple', 'instructionHealthcheckMultiple', 'instructionJSONInSingleQuotes', 'instructionWorkdirRelative',
      ].map((rule) => [rule, ValidationSeverity.ERROR]),
    )
    const problems = validate(read('Dockerfile'), settings).map((d) => `line ${d.range.start.line + 1}: ${d.message}`)
    expect(problems).toEqual([])
  })

  it('builds on Node 24 LTS and runs production dependencies only, as the node user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    for (const stage of stages) expect(stage.image).toMatch(/^node:24(\.\d+)*-bookworm-slim$/)
    const build = stages[0]!
    expect(instructionsOf(build, 'RUN').join('\n')).toMatch(/\bnpm ci\b/)
    expect(instructionsOf(build, 'RUN').join('\n')).toMatch(/\bnpm run build\b/)
    // `prepare` runs the build, and the runtime stage has no compiler: scripts stay off there.
    expect(instructionsOf(runtime, 'RUN').join('\n')).toMatch(/npm ci --omit=dev --ignore-scripts\b/)
    expect(stageEnv(runtime)).toMatchObject({ NODE_ENV: 'production' })
    const users = instructionsOf(runtime, 'USER')
    expect(users.at(-1)).toBe('node')
    const lastUser = runtime.instructions.findLastIndex((i) => i.keyword === 'USER')
    expect(runtime.instructions.slice(lastUser).some((i) => i.keyword === 'RUN'), 'nothing runs as root after USER').toBe(false)
    expect(instructionsOf(runtime, 'EXPOSE').join(' ').split(/\s+/).sort()).toEqual(['8080', '9090'])
    expect(dockerCmd).toEqual(['/app/loopers', 'serve'])
    expect(dockerHealthcheck.command[0]).toBe('node')
    const copies = instructionsOf(runtime, 'COPY').map(parseCopy)
    const copied = (source: string): boolean => copies.some((c) => c.sources.some((s) => s.replace(/\/$/, '').endsWith(source)))
    for (const source of ['dist', 'lua', 'pricing', 'package.json', 'docker/loopers']) expect(copied(source), source).toBe(true)
  })

  it('.dockerignore keeps secrets and local builds out of the context, and everything the Dockerfile copies in', () => {
    const patterns = readDockerignore(join(ROOT, '.dockerignore'))
    for (const path of ['.env', '.env.local', '.git/HEAD', 'node_modules/zod/package.json', 'dist/cli.js', 'test/unit/x.test.ts', 'bench/results/x.json', 'coverage/x']) {
      expect(isDockerIgnored(patterns, path), path).toBe(true)
    }
    const sources = stages.flatMap((s) => instructionsOf(s, 'COPY').map(parseCopy).filter((c) => c.flags.from === undefined).flatMap((c) => c.sources))
    const files = sources.flatMap((source) => listFiles(join(ROOT, source)).map((f) => relative(ROOT, f)))
    expect(files.length).toBeGreaterThan(10)
    expect(files.filter((f) => isDockerIgnored(patterns, f))).toEqual([])
  })
})

describe('the image, run here without a Docker engine', () => {
  let testRedis: TestRedis
  let composeRedis: ChildProcess
  let composeRedisPort: number
  let image: string
  let loopersEnv: Record<string, string>
  let rendered: ComposeFile
  let serving: ChildProcess | null = null

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)')
    testRedis = await startRedis()
    const result = await composeConfig(`REDIS_PASSWORD=${TEST_PASSWORD}\n`)
    expect(result.code, result.stderr).toBe(0)
    rendered = parseYaml(result.stdout) as ComposeFile
    // The compose file's own Redis command line, on a free loopback port of this machine.
    composeRedisPort = await freePort()
    const dataDir = mkdtempSync(join(scratch, 'redis-'))
    const [bin = '', ...args] = service(rendered, 'redis').command ?? []
    composeRedis = spawn(bin, [...args, '--port', String(composeRedisPort), '--bind', '127.0.0.1', '--dir', dataDir], { stdio: 'ignore' })
    await waitForPort(composeRedisPort)
    // The image's files, laid out as the Dockerfile's runtime stage copies them.
    image = mkdtempSync(join(scratch, 'image-'))
    assembleFinalStage(stages, ROOT, image)
    // Production dependencies only: the build and test tools stay in the build stage.
    for (const tool of ['typescript', 'vitest']) expect(existsSync(join(image, 'app/node_modules', tool)), tool).toBe(false)
    expect(existsSync(join(image, 'app/node_modules/fastify')), 'fastify').toBe(true)
    const composeEnv = service(rendered, 'loopers').environment ?? {}
    expect(composeEnv.REDIS_URL).toContain('@redis:6379')
    loopersEnv = {
      ...stageEnv(runtime),
      ...composeEnv,
      REDIS_URL: composeEnv.REDIS_URL!.replace('@redis:6379', `@127.0.0.1:${composeRedisPort}`),
      HOST: '127.0.0.1',
      LOOPERS_ADMIN_HOST: '127.0.0.1',
    }
  })
  afterAll(async () => {
    // A failed test must not leave a proxy running, nor a node orphaned by a shell that did not `exec`.
    if (serving?.pid !== undefined) {
      try {
        process.kill(-serving.pid, 'SIGKILL')
      } catch {}
    }
    composeRedis?.kill('SIGKILL')
    await testRedis?.stop()
  })

  const inImage = (path: string): string => join(image, path)

  it('docker/loopers runs the CLI from a checkout and through a symlink on PATH, as the image links it', async () => {
    expect(statSync(join(ROOT, 'docker/loopers')).mode & 0o111).toBe(0o111)
    const help = await run(join(ROOT, 'docker/loopers'), ['--help'], {})
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toMatch(/Usage: loopers/)
    const bin = mkdtempSync(join(scratch, 'bin-'))
    symlinkSync(join(ROOT, 'docker/loopers'), join(bin, 'loopers'))
    const version = await run('loopers', ['--version'], { PATH: [bin, PATH].join(delimiter) })
    expect(version.stdout.trim()).toBe((JSON.parse(read('package.json')) as { version: string }).version)
  })

  it('docker/loopers keys create --json works against a real Redis', async () => {
    const created = await run(join(ROOT, 'docker/loopers'), ['keys', 'create', '--name', 't', '--provider', 'openai', '--json'], { REDIS_URL: testRedis.url })
    expect(created.code, created.stderr).toBe(0)
    expectCreatedKey(created.stdout)
  })

  it("the compose Redis command requires the password, appends to its log, and passes its healthcheck", async () => {
    const url = loopersEnv.REDIS_URL!
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    const anonymous = new Redis({ port: composeRedisPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 })
    anonymous.on('error', () => {})
    try {
      await client.connect()
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes'])
      await anonymous.connect().catch(() => {})
      await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/)
    } finally {
      client.disconnect()
      anonymous.disconnect()
    }
    const redis = service(rendered, 'redis')
    const probe = redis.healthcheck!.test
    expect(probe[0]).toBe('CMD-SHELL')
    // The probe runs verbatim; a redis-cli shim only points it at this port instead of 6379.
    const shim = mkdtempSync(join(scratch, 'shim-'))
    const realCli = findOnPath('redis-cli')
    writeFileSync(join(shim, 'redis-cli'), `#!/bin/sh\nexec '${realCli}' -p ${composeRedisPort} "$@"\n`)
    chmodSync(join(shim, 'redis-cli'), 0o755)
    const probeEnv = (auth: string): Record<string, string> => ({ ...redis.environment, REDISCLI_AUTH: auth, PATH: [shim, PATH].join(delimiter) })
    expect((await run('/bin/sh', ['-c', probe[1]!], probeEnv(redis.environment?.REDISCLI_AUTH ?? ''))).code).toBe(0)
    expect((await run('/bin/sh', ['-c', probe[1]!], probeEnv('wrong'))).code).not.toBe(0)
  })

  it('/app/loopers keys create --json, in the image layout with the compose environment', async () => {
    const created = await run(inImage('/app/loopers'), ['keys', 'create', '--name', 't', '--provider', 'openai', '--json'], loopersEnv)
    expect(created.code, created.stderr).toBe(0)
    expectCreatedKey(created.stdout)
  })

  it('refuses a REDIS_PASSWORD that cannot go in the compose REDIS_URL, saying so and how to make one', async () => {
    for (const password of ['a/b+c=', 'p@ss word#']) {
      const result = await composeConfig(`REDIS_PASSWORD=${password}\n`)
      expect(result.code, result.stderr).toBe(0)
      const env = service(parseYaml(result.stdout) as ComposeFile, 'loopers').environment ?? {}
      expect(env.REDIS_URL).toBe(`redis://:${password}@redis:6379`)
      const [entry = '', ...args] = dockerCmd
      const refused = await run(inImage(entry), args, { ...stageEnv(runtime), ...env })
      expect(refused.code, password).toBe(1)
      expect(refused.stdout).toBe('')
      expect(refused.stderr.trimEnd().split('\n')).toEqual([expect.stringContaining('REDIS_PASSWORD in .env may hold only letters, digits')])
      expect(refused.stderr).toContain('openssl rand -hex 32')
      expect(refused.stderr).not.toContain(password)
    }
    // A generated password passes the check and reaches the CLI (which here reports its version).
    const result = await composeConfig(`REDIS_PASSWORD=${'0a'.repeat(32)}\n`)
    expect(result.code, result.stderr).toBe(0)
    const env = service(parseYaml(result.stdout) as ComposeFile, 'loopers').environment ?? {}
    const version = await run(inImage('/app/loopers'), ['--version'], env)
    expect(version.code, version.stderr).toBe(0)
  })

  it('the image CMD serves: /health answers, the HEALTHCHECK passes, /metrics answers, SIGTERM exits 0', async () => {
    const port = await freePort()
    const adminPort = await freePort()
    const env = { PATH, ...loopersEnv, PORT: String(port), LOOPERS_ADMIN_PORT: String(adminPort) }
    const [entry = '', ...args] = dockerCmd
    // Its own process group, so afterAll can clean up whatever it started; signals below go to it alone.
    const child = spawn(inImage(entry), args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    serving = child
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    try {
      await waitForHealth(`http://127.0.0.1:${port}/health`, exited, () => output)
      // `exec` replaced the shell: the signals docker stop sends reach node itself (with the launcher's flags).
      const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0')
      expect(argv.slice(1, 9)).toEqual(['--max-semi-space-size=16', '--min-semi-space-size=4', '--no-memory-reducer', '--initial-old-space-size=128', '--no-maglev', '--v8-pool-size=2', '--flush-baseline-code', inImage('/app/dist/cli.js')])
      expect(readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0')).toContain('MALLOC_MMAP_THRESHOLD_=1048576')
      const probe = await run(dockerHealthcheck.command[0]!, dockerHealthcheck.command.slice(1), { PORT: String(port) })
      expect(probe.code, probe.stderr).toBe(0)
      const metrics = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
      expect(metrics.status).toBe(200)
      expect(await metrics.text()).toContain('loopers_')
    } finally {
      child.kill('SIGTERM')
    }
    const started = Date.now()
    const exit = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 8_000))])
    if (exit === null) child.kill('SIGKILL')
    expect(exit, output).toEqual({ code: 0, signal: null })
    expect(Date.now() - started).toBeLessThan(5_000)
    // Nothing listens now: the same probe must report the container unhealthy.
    expect((await run(dockerHealthcheck.command[0]!, dockerHealthcheck.command.slice(1), { PORT: String(port) })).code).not.toBe(0)
  })
})

// ---- helpers ------------------------------------------------------------------------------------

function expectCreatedKey(stdout: string): void {
  const created = JSON.parse(stdout) as { key: string; hash: string; name: string; providers: string[] }
  expect(created.key).toMatch(KEY_FORMAT)
  expect(created.hash).toBe(createHash('sha256').update(created.key).digest('hex'))
  expect(created).toMatchObject({ name: 't', providers: ['openai'] })
}

function listFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path]
  return readdirSync(path).flatMap((entry) => listFiles(join(path, entry)))
}

function findOnPath(command: string): string {
  for (const dir of PATH.split(delimiter)) if (dir !== '' && existsSync(join(dir, command))) return join(dir, command)
  throw new Error(`${command} is not on PATH (apt-get install redis-tools)`)
}

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port })
      socket.once('connect', () => (socket.destroy(), resolve(true)))
      socket.once('error', () => resolve(false))
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function waitForHealth(url: string, exited: Promise<unknown>, output: () => string): Promise<void> {
  let gone = false
  void exited.then(() => (gone = true))
  const deadline = Date.now() + 15_000
  for (;;) {
    if (gone) throw new Error(`serve exited before answering /health:\n${output()}`)
    const status = await fetch(url).then((r) => r.status, () => 0)
    if (status === 200) return
    if (Date.now() > deadline) throw new Error(`${url} answered ${status}, not 200:\n${output()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
