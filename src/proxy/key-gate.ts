import type { IncomingHttpHeaders } from 'node:http'
import type { KeyAdmin, KeyRecord } from '../budget/types.js'
import { budgetUnavailable, invalidKey } from '../errors.js'
import { cachedKeyHash, isProxyKey } from '../keys.js'
import type { AdapterRegistry } from '../providers/registry.js'
import type { ProviderId } from '../providers/types.js'
import { refusalError } from './refusal.js'
import { NO_QUERY_PARAMS, parseTarget, type Target } from './target.js'

/** The proxy key of a request, read before its body: where its provider's SDK sends it, or from the path. */
interface GateKey {
  keyHash: string
}

/** An accepted key and the request's target as the gate read it from the URL: the pipeline does not parse it again. */
export interface GateEntry extends GateKey {
  target: Target
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The proxy key the gate accepted, set before the body is read; null for a URL that names no provider. */
    loopersKey: GateEntry | null
  }
}

/**
 * Refuses requests whose proxy key is missing, malformed, unknown, revoked or not allowed for the provider,
 * before their body is read. A key this process has recently seen valid passes without a store round trip
 * (the reserve call still checks it atomically); any other key pays one store lookup.
 */
export interface KeyGate {
  /**
   * The accepted key with the URL's target: at once (no promise) when this process saw it valid lately, else once the
   * store answers; null for a URL that names no provider (the router answers). A refused key rejects with the contract's ProxyError.
   */
  check(url: string, headers: IncomingHttpHeaders): GateEntry | null | Promise<GateEntry | null>
  /** The key of a request without checking it (for `forget` after a refusal); null when there is none. */
  keyOf(url: string, headers: IncomingHttpHeaders): GateKey | null
  /** Drops a key from the recently-valid set: the store refused it, so its next request is checked again. */
  forget(keyHash: string): void
}

interface KeyGateOptions {
  keys: Pick<KeyAdmin, 'getKey'>
  adapters: AdapterRegistry
  /** How many recently-valid keys are remembered (oldest dropped first). */
  maxKeys?: number
  /** How long a key stays remembered as valid. */
  ttlMs?: number
  now?: () => number
}

// The refusals that say the store's view of a key differs from the gate's.
const KEY_REFUSALS: ReadonlySet<string> = new Set(['invalid_key', 'key_revoked', 'provider_not_allowed'])

/** True for a refusal code after which the key is checked again before its next body is read (`forget`). */
export function isKeyRefusal(code: string): boolean {
  return KEY_REFUSALS.has(code)
}

const DEFAULT_MAX_KEYS = 10_000
const DEFAULT_TTL_MS = 10 * 60_000

export function createKeyGate(options: KeyGateOptions): KeyGate {
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS
  const now = options.now ?? Date.now
  // Insertion order is age order: a re-validated key is moved to the end.
  const valid = new Map<string, { providers: readonly ProviderId[]; until: number }>()
  // Concurrent first requests of one key share one lookup.
  const lookups = new Map<string, Promise<KeyRecord | null>>()
  // The last key found well-formed (a proxy key's shape, not yet its validity), and its hash.
  let lastKey = ''
  let lastHash = ''

  /** The key a request to `target` carries: in the path, else where its provider's SDK sends it; null when none. */
  function keyIn(target: Target, headers: IncomingHttpHeaders): string | null {
    return target.pathKey ?? options.adapters[target.provider].readKey(headers, target.query === '' ? NO_QUERY_PARAMS : new URLSearchParams(target.query))
  }

  /** A key not seen valid lately: checked against its stored record, which it is then remembered by. */
  async function admit(target: Target, keyHash: string): Promise<GateEntry> {
    const { provider } = target
    const record = await lookup(keyHash)
    if (record === null) throw refusalError({ ok: false, reason: 'invalid_key' }, provider, now())
    if (!record.active) throw refusalError({ ok: false, reason: 'key_revoked' }, provider, now())
    valid.set(keyHash, { providers: record.providers, until: now() + ttlMs })
    if (valid.size > maxKeys) valid.delete(valid.keys().next().value as string)
    if (!record.providers.includes(provider)) throw refusalError({ ok: false, reason: 'provider_not_allowed' }, provider, now())
    return { keyHash, target }
  }

  async function lookup(keyHash: string): Promise<KeyRecord | null> {
    let pending = lookups.get(keyHash)
    if (pending === undefined) {
      pending = options.keys.getKey(keyHash).finally(() => lookups.delete(keyHash))
      lookups.set(keyHash, pending)
    }
    try {
      return await pending
    } catch (error) {
      throw budgetUnavailable('the budget store is unavailable; no request is forwarded until it answers', { cause: error })
    }
  }

  return {
    keyOf(url, headers) {
      const target = parseTarget(url)
      if (target === null) return null
      const key = keyIn(target, headers)
      if (key === null || !isProxyKey(key)) return null
      return { keyHash: cachedKeyHash(key) }
    },
    check(url, headers) {
      const target = parseTarget(url)
      if (target === null) return null
      const { provider } = target
      const key = keyIn(target, headers)
      if (key === null) return Promise.reject(invalidKey('missing Loopers proxy key: use your lp- key as the API key'))
      // The key of the last request, already found well-formed, is not matched or hashed again (a run of one key's
      // requests): one comparison of the key's text, not a second one in cachedKeyHash.
      if (key !== lastKey) {
        if (!isProxyKey(key)) return Promise.reject(invalidKey('not a Loopers proxy key (lp- followed by 43 letters and digits)'))
        lastHash = cachedKeyHash(key)
        lastKey = key
      }
      const keyHash = lastHash
      const seen = valid.get(keyHash)
      if (seen !== undefined && seen.until > now()) {
        if (!seen.providers.includes(provider)) return Promise.reject(refusalError({ ok: false, reason: 'provider_not_allowed' }, provider, now()))
        return { keyHash, target }
      }
      valid.delete(keyHash)
      return admit(target, keyHash)
    },
    forget(keyHash) {
      valid.delete(keyHash)
    },
  }
}
