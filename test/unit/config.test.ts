import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError, ENVIRONMENT, checkAdminExposure, environmentHelp, loadConfig, loadDotEnv, loadExecEnvironment, schemaDefault, type EnvName } from '../../src/config.js'

describe('loadConfig', () => {
  it('selects Redis when only REDIS_CLUSTER_NODES or only REDIS_URL is set, and reads LOOPERS_DB', () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:1' }).redis).toEqual({ url: 'redis://127.0.0.1:6379', clusterNodes: ['a:1'], commandTimeoutMs: 1000 })
    expect(loadConfig({ REDIS_URL: 'redis://r:1' }).redis).toEqual({ url: 'redis://r:1', clusterNodes: null, commandTimeoutMs: 1000 })
    expect(loadConfig({ LOOPERS_DB: '/data/budget.db' }).db.path).toBe('/data/budget.db')
  })

  it('applies the contract defaults', () => {
    const config = loadConfig({ HOME: '/home/someone' })
    // No REDIS_URL nor REDIS_CLUSTER_NODES: the embedded store in the home folder.
    expect(config.redis).toBeNull()
    expect(config.db).toEqual({ path: '/home/someone/.loopers/loopers.db' })
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8080 })
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9090, token: null })
    expect(config.upstream.openai).toBe('https://api.openai.com')
    expect(config.upstream.bedrock).toBe('https://bedrock-runtime.us-east-1.amazonaws.com')
    expect(config.upstream.azure).toBeNull()
    expect(config.maxBodyBytes).toBe(10 * 1024 * 1024)
    expect(config.logLevel).toBe('info')
    expect(config.credentials.aws).toBeNull()
  })

  it('reads overrides and derives the Bedrock host from the region', () => {
    const config = loadConfig({
      REDIS_URL: 'rediss://cache:6380',
      REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001',
      PORT: '9000',
      LOOPERS_OPENAI_BASE_URL: 'http://127.0.0.1:4000/',
      AWS_REGION: 'eu-west-3',
      AWS_ACCESS_KEY_ID: 'id',
      AWS_SECRET_ACCESS_KEY: 'secret',
      LOOPERS_OPENAI_API_KEY: 'upstream',
      LOOPERS_MAX_BODY_BYTES: '1024',
    })
    expect(config.redis?.url).toBe('rediss://cache:6380')
    expect(config.redis?.clusterNodes).toEqual(['10.0.0.1:7000', '10.0.0.2:7001'])
    expect(config.listen.port).toBe(9000)
    expect(config.upstream.openai).toBe('http://127.0.0.1:4000')
    expect(config.upstream.bedrock).toBe('https://bedrock-runtime.eu-west-3.amazonaws.com')
    expect(config.credentials.aws).toEqual({ accessKeyId: 'id', secretAccessKey: 'secret', sessionToken: null })
    expect(config.credentials.openai).toBe('upstream')
    expect(config.maxBodyBytes).toBe(1024)
  })

  it('treats empty variables as unset', () => {
    expect(loadConfig({ PORT: '', LOOPERS_OPENAI_API_KEY: '' }).listen.port).toBe(8080)
  })

  it('reports every problem on its own line', () => {
    let error: unknown
    try {
      loadConfig({ PORT: 'abc', REDIS_URL: 'http://x', REDIS_CLUSTER_NODES: 'a:1,b', LOG_LEVEL: 'loud' })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    const problems = (error as ConfigError).problems
    expect(problems).toHaveLength(4)
    expect(problems.some((p) => p.startsWith('PORT:'))).toBe(true)
    expect(problems.some((p) => p.startsWith('REDIS_URL:'))).toBe(true)
    expect(problems.some((p) => p.startsWith('REDIS_CLUSTER_NODES'))).toBe(true)
    expect(problems.some((p) => p.startsWith('LOG_LEVEL:'))).toBe(true)
    for (const p of problems) expect(p).not.toContain('\n')
  })

  it('requires AWS key id and secret together', () => {
    expect(() => loadConfig({ AWS_ACCESS_KEY_ID: 'id' })).toThrow(/must be set together/)
  })

  it('reads LOOPERS_ADMIN_TOKEN; an admin listener beyond loopback without it is refused at start-up in one line', () => {
    expect(loadConfig({ LOOPERS_ADMIN_TOKEN: ' t0ken ' }).admin.token).toBe('t0ken')
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) {
      expect(() => checkAdminExposure(loadConfig({ LOOPERS_ADMIN_HOST: host })), host).not.toThrow()
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'admin.internal']) {
      let error: unknown
      try {
        checkAdminExposure(loadConfig({ LOOPERS_ADMIN_HOST: host }))
      } catch (e) {
        error = e
      }
      expect(error, host).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).problems).toHaveLength(1)
      expect((error as ConfigError).problems[0]).toContain('LOOPERS_ADMIN_TOKEN')
      expect(() => checkAdminExposure(loadConfig({ LOOPERS_ADMIN_HOST: host, LOOPERS_ADMIN_TOKEN: 'secret' }))).not.toThrow()
    }
  })
})

describe('loadExecEnvironment', () => {
  it('reads LOOPERS_PROXY_KEY and LOOPERS_PROXY_URL and hands the whole environment on', () => {
    const env = loadExecEnvironment({ LOOPERS_PROXY_KEY: ' lp-x ', LOOPERS_PROXY_URL: '', OPENAI_API_KEY: 'sk-1', UNSET: undefined })
    expect(env.proxyKey).toBe('lp-x')
    expect(env.proxyUrl).toBeNull()
    expect(env.inherited).toEqual({ LOOPERS_PROXY_KEY: ' lp-x ', LOOPERS_PROXY_URL: '', OPENAI_API_KEY: 'sk-1' })
  })
})

describe('LOOPERS_AZURE_DEPLOYMENTS', () => {
  it('maps deployments to the OpenAI models they run', () => {
    expect(loadConfig({}).azureDeployments).toEqual({})
    expect(loadConfig({ LOOPERS_AZURE_DEPLOYMENTS: 'my-dep=gpt-4o, mini = gpt-4o-mini,' }).azureDeployments).toEqual({
      'my-dep': 'gpt-4o',
      mini: 'gpt-4o-mini',
    })
  })

  it.each(['my-dep', 'my-dep=', '=gpt-4o', 'a b=gpt-4o', 'dep=gpt 4o'])('refuses %j with one line', (value) => {
    expect(() => loadConfig({ LOOPERS_AZURE_DEPLOYMENTS: value })).toThrow(/^LOOPERS_AZURE_DEPLOYMENTS.*deployment=openai-model/)
  })

  it('refuses a deployment named twice', () => {
    expect(() => loadConfig({ LOOPERS_AZURE_DEPLOYMENTS: 'd=gpt-4o,d=gpt-4o-mini' })).toThrow("deployment 'd' is named more than once")
  })
})

describe('the documented environment (loopers serve --help)', () => {
  const names = Object.keys(ENVIRONMENT) as EnvName[]

  it('shows each variable with the default the schema applies', () => {
    expect(names.length).toBeGreaterThan(30)
    for (const name of names) {
      const actual = schemaDefault(name)
      const derived = ['none', 'https://bedrock-runtime.<AWS_REGION>.amazonaws.com', '~/.loopers/loopers.db']
      if (actual === null) expect(derived, name).toContain(ENVIRONMENT[name].default)
      else expect(ENVIRONMENT[name].default, name).toBe(actual)
    }
  })

  it('documents every variable in .env.example with the same default', () => {
    const lines = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8').split('\n')
    for (const name of names) {
      const at = lines.findIndex((l) => new RegExp(`^#?\\s?${name}=`).test(l))
      expect(at, name).toBeGreaterThan(0)
      // The comment block above the variable (and the variables grouped with it) names its default.
      let start = at
      while (start > 0 && /^[#A-Z]/.test(lines[start - 1]!)) start--
      const block = lines.slice(start, at + 1).join('\n')
      const shown = ENVIRONMENT[name].default
      if (shown !== 'none') expect(block, name).toContain(`[${shown}]`)
    }
  })

  it('the help lists one line per variable', () => {
    const help = environmentHelp().split('\n')
    expect(help).toHaveLength(names.length)
    names.forEach((name, i) => expect(help[i]).toMatch(new RegExp(`^  ${name} +\\[${ENVIRONMENT[name].default.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\] \\S`)))
  })
})

describe('loadDotEnv', () => {
  const set: string[] = []
  afterEach(() => {
    for (const name of set.splice(0)) delete process.env[name]
  })

  it('reads ./.env when present; variables already set, even empty, win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopers-dotenv-'))
    try {
      expect(loadDotEnv(dir)).toBeNull()
      writeFileSync(join(dir, '.env'), 'LOOPERS_T_A=file\nLOOPERS_T_B=file\nLOOPERS_T_C=file\n')
      set.push('LOOPERS_T_A', 'LOOPERS_T_B', 'LOOPERS_T_C')
      process.env.LOOPERS_T_A = 'shell'
      process.env.LOOPERS_T_C = ''
      expect(loadDotEnv(dir)).toBe(join(dir, '.env'))
      expect([process.env.LOOPERS_T_A, process.env.LOOPERS_T_B, process.env.LOOPERS_T_C]).toEqual(['shell', 'file', ''])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
