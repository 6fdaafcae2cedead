import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import type { z } from 'zod'
import { withZod, type Zod } from './transient-zod.js'

/** The only module that reads the environment. Everything else receives a `Config`. */

// An Azure deployment name (letters, digits, `.`, `_`, `-`), `=`, and the OpenAI model it runs.
const AZURE_DEPLOYMENT_PAIR = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\s*=\s*[A-Za-z0-9][A-Za-z0-9._:-]*$/

/** The environment's schema, built for each parse (zod is loaded only while it runs: ./transient-zod.ts). */
function envSchema(z: Zod) {
  const url = z.url({ protocol: /^https?$/ })
  const redisUrl = z.url({ protocol: /^rediss?$/ })
  const port = z.coerce.number().int().min(0).max(65535)
  const positiveInt = z.coerce.number().int().positive()
  const optionalText = z.string().trim().min(1).optional()
  const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
  const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')
  const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port')

  return z.object({
    REDIS_URL: redisUrl.optional(),
    LOOPERS_DB: optionalText,
    REDIS_CLUSTER_NODES: z
      .string()
      .trim()
      .min(1)
      .transform((s) => s.split(',').map((n) => n.trim()))
      .pipe(z.array(hostPort).min(1))
      .optional(),
    PORT: port.default(8080),
    HOST: z.string().min(1).default('0.0.0.0'),
    LOOPERS_ADMIN_PORT: port.default(9090),
    LOOPERS_ADMIN_HOST: z.string().min(1).default('127.0.0.1'),
    LOOPERS_ADMIN_TOKEN: optionalText,
    LOOPERS_OPENAI_BASE_URL: url.default('https://api.openai.com'),
    LOOPERS_ANTHROPIC_BASE_URL: url.default('https://api.anthropic.com'),
    LOOPERS_GEMINI_BASE_URL: url.default('https://generativelanguage.googleapis.com'),
    LOOPERS_MISTRAL_BASE_URL: url.default('https://api.mistral.ai'),
    LOOPERS_BEDROCK_BASE_URL: url.optional(),
    LOOPERS_AZURE_ENDPOINT: url.optional(),
    LOOPERS_OPENAI_API_KEY: optionalText,
    LOOPERS_ANTHROPIC_API_KEY: optionalText,
    LOOPERS_GEMINI_API_KEY: optionalText,
    LOOPERS_MISTRAL_API_KEY: optionalText,
    LOOPERS_AZURE_API_KEY: optionalText,
    LOOPERS_BEDROCK_API_KEY: optionalText,
    AWS_ACCESS_KEY_ID: optionalText,
    AWS_SECRET_ACCESS_KEY: optionalText,
    AWS_SESSION_TOKEN: optionalText,
    AWS_REGION: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS region such as us-east-1').default('us-east-1'),
    LOOPERS_PRICING_PATH: optionalText,
    LOOPERS_AZURE_DEPLOYMENTS: z
      .string()
      .trim()
      .min(1)
      .transform((s) => s.split(',').map((pair) => pair.trim()).filter((pair) => pair.length > 0))
      .pipe(z.array(z.string().regex(AZURE_DEPLOYMENT_PAIR, 'expected deployment=openai-model pairs, e.g. my-dep=gpt-4o,other=gpt-4o-mini')))
      .optional(),
    LOG_LEVEL: logLevel.default('info'),
    LOOPERS_MAX_BODY_BYTES: positiveInt.default(10 * 1024 * 1024),
    LOOPERS_REDIS_TIMEOUT_MS: positiveInt.default(1_000),
    LOOPERS_UPSTREAM_CONNECT_TIMEOUT_MS: positiveInt.default(10_000),
    LOOPERS_UPSTREAM_TIMEOUT_MS: positiveInt.default(600_000),
    LOOPERS_SESSION_TTL_SECONDS: positiveInt.default(86_400),
    LOOPERS_STREAM_SLICE_TOKENS: positiveInt.default(1024),
    LOOPERS_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(30_000),
    LOOPERS_METRICS_PER_KEY: flag.default(false),
    LOOPERS_IDLE_RELEASE_MS: z.coerce.number().int().min(0).default(30_000),
  })
}

type Env = z.output<ReturnType<typeof envSchema>>

/** The variables `envSchema` reads. */
export type EnvName = keyof ReturnType<typeof envSchema>['shape']

/**
 * Every variable with its default as shown to users (`loopers serve --help`), kept beside the schema so
 * neither can drift: the type requires every schema key, and a test checks each default against the schema.
 */
export const ENVIRONMENT: Record<EnvName, { default: string; meaning: string }> = {
  REDIS_URL: { default: 'none', meaning: 'a Redis budget store (rediss:// for TLS); unset: the embedded store' },
  LOOPERS_DB: { default: '~/.loopers/loopers.db', meaning: 'the embedded budget store (SQLite), used without REDIS_URL or REDIS_CLUSTER_NODES; HOME locates ~' },
  REDIS_CLUSTER_NODES: { default: 'none', meaning: 'host:port,host:port selects a Redis Cluster instead' },
  PORT: { default: '8080', meaning: 'proxy listener port (HTTP/1.1 and h2c)' },
  HOST: { default: '0.0.0.0', meaning: 'proxy listener address' },
  LOOPERS_ADMIN_PORT: { default: '9090', meaning: 'admin listener port: /metrics, /health, /ready, dashboard' },
  LOOPERS_ADMIN_HOST: { default: '127.0.0.1', meaning: 'admin listener address' },
  LOOPERS_ADMIN_TOKEN: { default: 'none', meaning: 'Bearer token for every admin route but /health and /ready; required off loopback' },
  LOOPERS_OPENAI_BASE_URL: { default: 'https://api.openai.com', meaning: 'OpenAI upstream' },
  LOOPERS_ANTHROPIC_BASE_URL: { default: 'https://api.anthropic.com', meaning: 'Anthropic upstream' },
  LOOPERS_GEMINI_BASE_URL: { default: 'https://generativelanguage.googleapis.com', meaning: 'Gemini upstream' },
  LOOPERS_MISTRAL_BASE_URL: { default: 'https://api.mistral.ai', meaning: 'Mistral upstream' },
  LOOPERS_BEDROCK_BASE_URL: { default: 'https://bedrock-runtime.<AWS_REGION>.amazonaws.com', meaning: 'Bedrock upstream' },
  LOOPERS_AZURE_ENDPOINT: { default: 'none', meaning: 'the Azure OpenAI resource, e.g. https://myres.openai.azure.com' },
  LOOPERS_OPENAI_API_KEY: { default: 'none', meaning: 'server-held OpenAI key, used when a request brings none' },
  LOOPERS_ANTHROPIC_API_KEY: { default: 'none', meaning: 'server-held Anthropic key' },
  LOOPERS_GEMINI_API_KEY: { default: 'none', meaning: 'server-held Gemini key' },
  LOOPERS_MISTRAL_API_KEY: { default: 'none', meaning: 'server-held Mistral key' },
  LOOPERS_AZURE_API_KEY: { default: 'none', meaning: 'server-held Azure OpenAI key' },
  LOOPERS_BEDROCK_API_KEY: { default: 'none', meaning: 'server-held Bedrock API key (tried before AWS_*)' },
  AWS_ACCESS_KEY_ID: { default: 'none', meaning: 'server-held Bedrock SigV4 access key id' },
  AWS_SECRET_ACCESS_KEY: { default: 'none', meaning: 'its secret (set both or neither)' },
  AWS_SESSION_TOKEN: { default: 'none', meaning: 'its session token' },
  AWS_REGION: { default: 'us-east-1', meaning: 'Bedrock region' },
  LOOPERS_PRICING_PATH: { default: 'none', meaning: 'a pricing JSON file merged over the built-in table' },
  LOOPERS_AZURE_DEPLOYMENTS: { default: 'none', meaning: 'deployment=openai-model,…: price and tokenize Azure deployments as that model' },
  LOG_LEVEL: { default: 'info', meaning: 'fatal, error, warn, info, debug, trace or silent' },
  LOOPERS_MAX_BODY_BYTES: { default: '10485760', meaning: 'larger request bodies get 413' },
  LOOPERS_REDIS_TIMEOUT_MS: { default: '1000', meaning: 'a slower budget store call fails closed (503)' },
  LOOPERS_UPSTREAM_CONNECT_TIMEOUT_MS: { default: '10000', meaning: 'connecting to a provider' },
  LOOPERS_UPSTREAM_TIMEOUT_MS: { default: '600000', meaning: 'waiting for response headers, and the longest silence in a body' },
  LOOPERS_SESSION_TTL_SECONDS: { default: '86400', meaning: 'a session expires after this long without a request' },
  LOOPERS_STREAM_SLICE_TOKENS: { default: '1024', meaning: 'output tokens a stream reserves ahead each time it extends' },
  LOOPERS_SHUTDOWN_GRACE_MS: { default: '30000', meaning: 'how long in-flight requests may finish after SIGTERM' },
  LOOPERS_METRICS_PER_KEY: { default: 'false', meaning: 'add a key-hash-prefix label to request and spend metrics' },
  LOOPERS_IDLE_RELEASE_MS: { default: '30000', meaning: 'after this long without requests, return the memory a burst left to the OS (also once at start-up, before listening, and one short scavenge after 1 s of quiet); 0: never, neither' },
}

/** The schema's own default of `name` as text, or null when it has none (for the drift test). */
export function schemaDefault(name: EnvName): string | null {
  return withZod((z) => {
    const parsed = envSchema(z).shape[name].safeParse(undefined)
    return parsed.success && parsed.data !== undefined ? String(parsed.data) : null
  })
}

/** The `--help` text listing every variable, its default and its meaning, one per line. */
export function environmentHelp(): string {
  const names = Object.keys(ENVIRONMENT) as EnvName[]
  const width = Math.max(...names.map((n) => n.length))
  return names.map((n) => `  ${n.padEnd(width)}  [${ENVIRONMENT[n].default}] ${ENVIRONMENT[n].meaning}`).join('\n')
}

interface RedisConfig {
  url: string
  clusterNodes: string[] | null
  commandTimeoutMs: number
}

export interface Config {
  /** The Redis budget store; null selects the embedded one (`db`). */
  redis: RedisConfig | null
  /** The embedded store's SQLite file, used when `redis` is null. */
  db: { path: string }
  listen: { host: string; port: number }
  /** `token`: the bearer token every admin route but /health and /ready needs; null = none (loopback only). */
  admin: { host: string; port: number; token: string | null }
  upstream: {
    openai: string
    anthropic: string
    gemini: string
    mistral: string
    /** Full base URL of Bedrock runtime (region-derived unless overridden). */
    bedrock: string
    /** Azure resource endpoint; null when Azure is not configured. */
    azure: string | null
    connectTimeoutMs: number
    /** Longest wait for upstream response headers, and longest silence inside a body. */
    timeoutMs: number
  }
  /** Server-held upstream credentials; null when not set. */
  credentials: {
    openai: string | null
    anthropic: string | null
    gemini: string | null
    mistral: string | null
    azure: string | null
    bedrockApiKey: string | null
    aws: { accessKeyId: string; secretAccessKey: string; sessionToken: string | null } | null
    awsRegion: string
  }
  pricingPath: string | null
  /** Azure deployment name → the OpenAI model it is priced and tokenized as (LOOPERS_AZURE_DEPLOYMENTS). */
  azureDeployments: Record<string, string>
  logLevel: Env['LOG_LEVEL']
  maxBodyBytes: number
  sessionTtlSeconds: number
  /** Output tokens reserved ahead of a stream each time its reservation is extended. */
  streamSliceTokens: number
  shutdownGraceMs: number
  metricsPerKey: boolean
  /** Quiet time after which the memory a burst left is returned to the OS; 0 = never. */
  idleReleaseMs: number
}

/** Thrown for bad configuration; `problems` holds one line per problem, never a stack. */
export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(problems.join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/**
 * Refuses (ConfigError, one line) to serve the admin listener beyond loopback without LOOPERS_ADMIN_TOKEN.
 * Checked when the server starts, not in loadConfig, so CLI commands run wherever the server's environment is.
 */
export function checkAdminExposure(config: Config): void {
  if (config.admin.token === null && !isLoopback(config.admin.host)) {
    throw new ConfigError([
      `LOOPERS_ADMIN_HOST=${config.admin.host} is not a loopback address: set LOOPERS_ADMIN_TOKEN, or bind the admin listener to 127.0.0.1`,
    ])
  }
}

/** True for names and addresses that only this machine can reach. */
function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1'
}

function trimTrailingSlash(value: string): string {
  return value.replace(/\/+$/, '')
}

/** What `loopers exec` reads: its two variables, and the environment its child inherits. */
interface ExecEnvironment {
  /** LOOPERS_PROXY_KEY, else null (then `--key` is required). */
  proxyKey: string | null
  /** LOOPERS_PROXY_URL, else null (then `--url` or the default applies). */
  proxyUrl: string | null
  /** The whole environment, handed to the child with the base-URL variables set on top. */
  inherited: Record<string, string>
}

/** The environment of `loopers exec`; it needs none of the proxy's own configuration, so it validates nothing here. */
export function loadExecEnvironment(env: NodeJS.ProcessEnv = process.env): ExecEnvironment {
  const inherited: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) if (value !== undefined) inherited[name] = value
  return {
    proxyKey: env.LOOPERS_PROXY_KEY?.trim() || null,
    proxyUrl: env.LOOPERS_PROXY_URL?.trim() || null,
    inherited,
  }
}

/** Parses the environment into a Config; throws ConfigError listing every problem. Empty strings count as unset. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') input[name] = value
  }
  const parsed = withZod((z) => {
    const result = envSchema(z).safeParse(input)
    return result.success ? { data: result.data } : { issues: result.error.issues.map((issue) => `${issue.path.join('.') || 'environment'}: ${issue.message}`) }
  })
  if (parsed.data === undefined) throw new ConfigError(parsed.issues)
  const e = parsed.data
  const problems: string[] = []
  if ((e.AWS_ACCESS_KEY_ID === undefined) !== (e.AWS_SECRET_ACCESS_KEY === undefined)) {
    problems.push('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together')
  }
  const deployments = (e.LOOPERS_AZURE_DEPLOYMENTS ?? []).map((pair) => pair.split('=')[0]!.trim())
  for (const name of new Set(deployments.filter((name, i) => deployments.indexOf(name) !== i))) {
    problems.push(`LOOPERS_AZURE_DEPLOYMENTS: deployment '${name}' is named more than once`)
  }
  if (problems.length > 0) throw new ConfigError(problems)

  return {
    redis:
      e.REDIS_URL === undefined && e.REDIS_CLUSTER_NODES === undefined
        ? null
        : {
            url: e.REDIS_URL ?? 'redis://127.0.0.1:6379',
            clusterNodes: e.REDIS_CLUSTER_NODES ?? null,
            commandTimeoutMs: e.LOOPERS_REDIS_TIMEOUT_MS,
          },
    db: { path: resolve(e.LOOPERS_DB ?? join(input.HOME ?? homedir(), '.loopers', 'loopers.db')) },
    listen: { host: e.HOST, port: e.PORT },
    admin: { host: e.LOOPERS_ADMIN_HOST, port: e.LOOPERS_ADMIN_PORT, token: e.LOOPERS_ADMIN_TOKEN ?? null },
    upstream: {
      openai: trimTrailingSlash(e.LOOPERS_OPENAI_BASE_URL),
      anthropic: trimTrailingSlash(e.LOOPERS_ANTHROPIC_BASE_URL),
      gemini: trimTrailingSlash(e.LOOPERS_GEMINI_BASE_URL),
      mistral: trimTrailingSlash(e.LOOPERS_MISTRAL_BASE_URL),
      bedrock: trimTrailingSlash(e.LOOPERS_BEDROCK_BASE_URL ?? `https://bedrock-runtime.${e.AWS_REGION}.amazonaws.com`),
      azure: e.LOOPERS_AZURE_ENDPOINT === undefined ? null : trimTrailingSlash(e.LOOPERS_AZURE_ENDPOINT),
      connectTimeoutMs: e.LOOPERS_UPSTREAM_CONNECT_TIMEOUT_MS,
      timeoutMs: e.LOOPERS_UPSTREAM_TIMEOUT_MS,
    },
    credentials: {
      openai: e.LOOPERS_OPENAI_API_KEY ?? null,
      anthropic: e.LOOPERS_ANTHROPIC_API_KEY ?? null,
      gemini: e.LOOPERS_GEMINI_API_KEY ?? null,
      mistral: e.LOOPERS_MISTRAL_API_KEY ?? null,
      azure: e.LOOPERS_AZURE_API_KEY ?? null,
      bedrockApiKey: e.LOOPERS_BEDROCK_API_KEY ?? null,
      aws:
        e.AWS_ACCESS_KEY_ID !== undefined && e.AWS_SECRET_ACCESS_KEY !== undefined
          ? { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY, sessionToken: e.AWS_SESSION_TOKEN ?? null }
          : null,
      awsRegion: e.AWS_REGION,
    },
    pricingPath: e.LOOPERS_PRICING_PATH ?? null,
    azureDeployments: parseDeployments(e.LOOPERS_AZURE_DEPLOYMENTS ?? []),
    logLevel: e.LOG_LEVEL,
    maxBodyBytes: e.LOOPERS_MAX_BODY_BYTES,
    sessionTtlSeconds: e.LOOPERS_SESSION_TTL_SECONDS,
    streamSliceTokens: e.LOOPERS_STREAM_SLICE_TOKENS,
    shutdownGraceMs: e.LOOPERS_SHUTDOWN_GRACE_MS,
    metricsPerKey: e.LOOPERS_METRICS_PER_KEY,
    idleReleaseMs: e.LOOPERS_IDLE_RELEASE_MS,
  }
}

function parseDeployments(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim()
  }
  return out
}

/**
 * Loads `<dir>/.env` into the environment when the file exists (Node's own parser); variables already
 * set, even to an empty value, win. Returns the file's path, or null when there is none.
 */
export function loadDotEnv(dir: string = process.cwd()): string | null {
  const path = join(dir, '.env')
  if (!existsSync(path)) return null
  try {
    process.loadEnvFile(path)
  } catch (err) {
    throw new ConfigError([`${path}: cannot read: ${(err as Error).message.split('\n')[0]}`])
  }
  return path
}

