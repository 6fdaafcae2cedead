import { createHash, randomBytes } from 'node:crypto'

/** The 62 characters a proxy key body is drawn from. */
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const KEY_PREFIX = 'lp-'
const KEY_BODY_LENGTH = 43
/** 248 = 4 · 62: bytes at or above it are rejected, so `byte % 62` is uniform (no modulo bias). */
const REJECT_FROM = 256 - (256 % ALPHABET.length)

const PROXY_KEY = /^lp-[A-Za-z0-9]{43}$/
const KEY_HASH = /^[0-9a-f]{64}$/

/** A fresh proxy key: `lp-` and 43 uniformly random characters of [A-Za-z0-9] (≈256 bits). */
export function generateKey(): string {
  let body = ''
  while (body.length < KEY_BODY_LENGTH) {
    for (const byte of randomBytes(64)) {
      if (byte >= REJECT_FROM) continue
      body += ALPHABET[byte % ALPHABET.length]
      if (body.length === KEY_BODY_LENGTH) break
    }
  }
  return KEY_PREFIX + body
}

/** The key's stored identity: lowercase hex SHA-256 of the whole key string, prefix included. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/** Distinct keys whose hash is remembered; past it the one remembered first is dropped. */
export const KEY_HASH_CACHE_SIZE = 1024
const hashes = new Map<string, string>()
// The most recently used key: a run of requests with one key finds it without a lookup.
let newestKey = ''
let newestHash = ''

/**
 * hashKey for the request path: a bounded cache of proxy keys, so a busy key is hashed once rather than on
 * every request. Same result as hashKey; the raw keys stay in this map only (never logged). A hit changes
 * nothing: moving the key to the back (delete, then set again) for every request whose key is not the newest
 * filled the map's table with deleted entries, rebuilt in the old generation about every 1,024 lookups. Past
 * the bound the key remembered first goes, busy or not, and is hashed again when next seen.
 */
export function cachedKeyHash(key: string): string {
  if (key === newestKey) return newestHash
  let hash = hashes.get(key)
  if (hash === undefined) {
    hash = hashKey(key)
    if (hashes.size >= KEY_HASH_CACHE_SIZE) hashes.delete(hashes.keys().next().value as string)
    hashes.set(key, hash)
  }
  newestKey = key
  newestHash = hash
  return hash
}

/** True when `s` is exactly a proxy key (`lp-` + 43 of [A-Za-z0-9]). */
export function isProxyKey(s: string): boolean {
  return PROXY_KEY.test(s)
}

/** True when `s` has the shape of a key hash (64 lowercase hex digits). */
export function isKeyHash(s: string): boolean {
  return KEY_HASH.test(s)
}
