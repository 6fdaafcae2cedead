/**
 * Reading the Docker assets without a Docker engine: a Dockerfile parser, the runtime stage laid
 * out on disk as its COPY instructions and its production `npm ci` would lay it out, and
 * `.dockerignore` matching.
 */
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { dirname, join, posix } from 'node:path'

export interface Instruction {
  /** Upper-case keyword, e.g. `COPY`. */
  keyword: string
  /** Everything after the keyword, continuation lines joined with a space. */
  args: string
  line: number
}

export interface Stage {
  /** The `FROM` image reference. */
  image: string
  name: string | null
  instructions: Instruction[]
}

/** Splits a Dockerfile into stages of instructions (comments dropped, `\` continuations joined). */
export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = []
  let pending: { parts: string[]; line: number } | null = null
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd()
    if (/^\s*#/.test(line) || (pending === null && line.trim() === '')) return
    const continued = line.endsWith('\\')
    const body = continued ? line.slice(0, -1).trim() : line.trim()
    pending ??= { parts: [], line: index + 1 }
    pending.parts.push(body)
    if (continued) return
    const joined = pending.parts.filter((p) => p !== '').join(' ')
    const match = /^(\S+)\s*(.*)$/.exec(joined)
    if (match) instructions.push({ keyword: match[1]!.toUpperCase(), args: match[2]!, line: pending.line })
    pending = null
  })
  const stages: Stage[] = []
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [image = '', as, name] = instruction.args.split(/\s+/)
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? (name ?? null) : null, instructions: [] })
    } else {
      if (stages.length === 0) throw new Error(`line ${instruction.line}: ${instruction.keyword} before FROM`)
      stages[stages.length - 1]!.instructions.push(instruction)
    }
  }
  return stages
}

/** The JSON (exec) form of CMD / HEALTHCHECK … CMD / ENTRYPOINT arguments; throws on the shell form. */
export function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args)
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`not an exec form: ${args}`)
  return parsed
}

/** `HEALTHCHECK [--flag=value…] CMD [...]` → its flags and exec-form command. */
export function parseHealthcheck(args: string): { flags: Record<string, string>; command: string[] } {
  const match = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])$/s.exec(args.trim())
  if (!match) throw new Error(`unexpected HEALTHCHECK form: ${args}`)
  const flags: Record<string, string> = {}
  for (const flag of match[1]!.trim().split(/\s+/).filter(Boolean)) {
    const [name, value] = flag.slice(2).split('=')
    flags[name!] = value!
  }
  return { flags, command: execForm(match[2]!) }
}

/** `COPY [--flag=value…] <src>… <dest>` → flags, sources and destination. */
export function parseCopy(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const words = args.trim().split(/\s+/)
  const flags: Record<string, string> = {}
  while (words[0]?.startsWith('--')) {
    const [name, value] = words.shift()!.slice(2).split('=')
    flags[name!] = value ?? ''
  }
  const dest = words.pop()
  if (dest === undefined || words.length === 0) throw new Error(`COPY needs a source and a destination: ${args}`)
  return { flags, sources: words, dest }
}

/** Environment set by `ENV` lines of a stage (`ENV A=b C=d` form only). */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {}
  for (const { keyword, args } of stage.instructions) {
    if (keyword !== 'ENV') continue
    for (const pair of args.split(/\s+/)) {
      const eq = pair.indexOf('=')
      if (eq <= 0) throw new Error(`use the ENV NAME=value form: ENV ${args}`)
      env[pair.slice(0, eq)] = pair.slice(eq + 1)
    }
  }
  return env
}

/**
 * Lays out the final stage under `root` (image path `/x` → `root/x`): each COPY from the build
 * context or from an earlier stage (whose files are taken from the repository, built by `npm run
 * build` as that stage does), plus the packages a production `npm ci --omit=dev` installs, copied
 * from the repository's node_modules. Returns the stage's final WORKDIR.
 */
export function assembleFinalStage(stages: Stage[], repo: string, root: string): string {
  const stage = stages[stages.length - 1]!
  let workdir = '/'
  const workdirOf = new Map<string, string>()
  for (const s of stages) {
    const last = [...s.instructions].reverse().find((i) => i.keyword === 'WORKDIR')
    if (s.name !== null && last !== undefined) workdirOf.set(s.name, last.args.trim())
  }
  for (const { keyword, args, line } of stage.instructions) {
    if (keyword === 'WORKDIR') workdir = posix.resolve(workdir, args.trim())
    if (keyword === 'RUN' && /\bnpm ci\b/.test(args)) {
      if (!/--omit=dev\b/.test(args)) throw new Error(`line ${line}: the runtime stage must install production dependencies only`)
      copyProductionModules(repo, join(root, workdir))
    }
    if (keyword !== 'COPY' && keyword !== 'ADD') continue
    const { flags, sources, dest } = parseCopy(args)
    const target = join(root, posix.resolve(workdir, dest))
    for (const source of sources) {
      let from = source
      if (flags.from !== undefined) {
        const base = workdirOf.get(flags.from)
        if (base === undefined || !source.startsWith(`${base}/`)) throw new Error(`line ${line}: cannot map ${source} of stage ${flags.from}`)
        from = source.slice(base.length + 1)
      }
      const path = join(repo, from)
      if (!existsSync(path)) throw new Error(`line ${line}: ${from} is not in the repository (run \`npm run build\`?)`)
      const into = sources.length > 1 || dest.endsWith('/') ? join(target, posix.basename(from)) : target
      mkdirSync(dirname(into), { recursive: true })
      cpSync(path, into, { recursive: true })
    }
  }
  return workdir
}

/** Copies every package the lockfile does not mark `dev` from repo/node_modules into `app/node_modules`. */
function copyProductionModules(repo: string, app: string): void {
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; optional?: boolean }>
  }
  for (const [path, meta] of Object.entries(lock.packages)) {
    // Nested packages travel with their parent directory.
    if (!path.startsWith('node_modules/') || path.slice('node_modules/'.length).includes('node_modules/')) continue
    if (meta.dev === true) continue
    const from = join(repo, path)
    if (!existsSync(from)) {
      if (meta.optional === true) continue
      throw new Error(`${path} is a production dependency but is not installed: run npm ci`)
    }
    cpSync(from, join(app, path), { recursive: true })
  }
}

/**
 * True when `.dockerignore` keeps `path` (relative, `/`-separated) out of the build context:
 * the last matching pattern wins, `!` re-includes, a pattern that matches a directory covers its contents.
 */
export function isDockerIgnored(patterns: string[], path: string): boolean {
  let ignored = false
  const parts = path.split('/')
  for (const raw of patterns) {
    const negate = raw.startsWith('!')
    const pattern = posix.normalize((negate ? raw.slice(1) : raw).trim()).replace(/^\/+|\/+$/g, '')
    const regex = new RegExp(`^${globToRegex(pattern)}$`)
    const matches = parts.some((_, i) => regex.test(parts.slice(0, i + 1).join('/')))
    if (matches) ignored = !negate
  }
  return ignored
}

/** Reads `.dockerignore` patterns (comments and blank lines dropped). */
export function readDockerignore(path: string): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
}

function globToRegex(glob: string): string {
  let out = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*' && glob[i + 1] === '*') {
      i++
      if (glob[i + 1] === '/') {
        out += '(?:.*/)?'
        i++
      } else out += '.*'
    } else if (c === '*') out += '[^/]*'
    else if (c === '?') out += '[^/]'
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return out
}

// ---- docker-compose files ------------------------------------------------------------------------

export interface ComposeService {
  image?: string
  build?: { context: string } | string
  command?: string[]
  environment?: Record<string, string>
  ports?: Array<string | { published: number; target: number; host_ip?: string }>
  volumes?: string[]
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { test: string[] }
  restart?: string
}
export interface ComposeFile {
  services: Record<string, ComposeService>
  volumes?: Record<string, unknown>
}

export function service(file: ComposeFile, name: string): ComposeService {
  const found = file.services[name]
  if (found === undefined) throw new Error(`docker-compose.yml has no service ${name}`)
  return found
}

/** Published ports as {hostIp, published, target}; hostIp '' means every interface. */
export function publishedPorts(svc: ComposeService): Array<{ hostIp: string; published: number; target: number }> {
  return (svc.ports ?? []).map((port) => {
    if (typeof port !== 'string') return { hostIp: port.host_ip ?? '', published: port.published, target: port.target }
    const parts = port.replace(/\/tcp$/, '').split(':')
    const target = Number(parts.pop())
    const published = Number(parts.pop())
    return { hostIp: parts.join(':'), published, target }
  })
}
