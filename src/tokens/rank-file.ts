import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { TiktokenBPE } from 'js-tiktoken/lite'
import type { Encoding } from './tiktoken.js'

/** The pre-tokenizer pattern and the rank text's bytes (`! <first rank> <base64> …`), for a RankBuilder. */
export interface RankSource {
  patStr: string
  rankText: Uint8Array
}

const requireRanks = createRequire(import.meta.url)
const RANKS_FIELD = Buffer.from(',"bpe_ranks":"')

/** Reads the rank file at once (for a synchronous first count). */
export function readRankSource(encoding: Encoding): RankSource {
  return rankSource(encoding, readFileSync(rankFile(encoding)))
}

/** Reads the rank file without blocking the event loop. */
export async function loadRankSource(encoding: Encoding): Promise<RankSource> {
  return rankSource(encoding, await readFile(rankFile(encoding)))
}

/** js-tiktoken's CommonJS rank file for `encoding`: `module.exports = {"pat_str":…,"bpe_ranks":"…"};`. */
function rankFile(encoding: Encoding): string {
  return requireRanks.resolve(`js-tiktoken/ranks/${encoding}`)
}

/**
 * The rank data, read from the file's bytes rather than imported: the 2 MB text is neither kept in the
 * module cache nor copied into strings. Falls back to `require` if the file's layout ever changes.
 */
function rankSource(encoding: Encoding, file: Buffer): RankSource {
  const at = file.indexOf(RANKS_FIELD)
  const open = file.indexOf(0x7b) // '{'
  const close = file.lastIndexOf(0x22) // the closing quote of the rank text
  if (at > open && open >= 0 && close > at + RANKS_FIELD.length) {
    try {
      const head = JSON.parse(`${file.toString('utf8', open, at)}}`) as { pat_str?: unknown }
      if (typeof head.pat_str === 'string') return { patStr: head.pat_str, rankText: file.subarray(at + RANKS_FIELD.length, close) }
    } catch {
      // not the layout this reads: load it as the module it is
    }
  }
  const data = requireRanks(`js-tiktoken/ranks/${encoding}`) as TiktokenBPE
  return { patStr: data.pat_str, rankText: Buffer.from(data.bpe_ranks, 'latin1') }
}
