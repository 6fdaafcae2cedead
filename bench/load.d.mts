/** Types of the parts of bench/load.mjs its tests use. */
import type { Pool } from 'undici'
export interface BenchRequest {
  path: string
  method?: string
  headers: Record<string, string>
  body: string
}
export function createPool(origin: string, connections: number, timeoutMs?: number): Pool
export function primeConnections(options: { origin: string; request: BenchRequest; pool: Pool; connections: number }): Promise<{ open: number; opened: number }>
export const SLOWEST_KEPT: number
export function slowestRequests(latencies: number[], sentAt: number[], start: number, n?: number): { atMs: number; ms: number }[]
export function openLoop(options: { origin: string; request: BenchRequest | ((index: number) => BenchRequest); rate: number; durationMs: number; pool?: Pool; connections?: number; drainMs?: number; keepLatencies?: boolean }): Promise<{
  ok: number
  connects: number
  sent: number
  sendLagMs: { count: number; max: number | null }
  startedAtMs: number
  slowest: { atMs: number; ms: number }[]
  latencyMs: { count: number; p50: number | null; p99: number | null; max: number | null }
}>
export function closedLoop(options: {
  origin: string
  request: BenchRequest | ((index: number) => BenchRequest)
  concurrency: number
  durationMs: number
  pool?: Pool
  maxRequests?: number
  drainMs?: number
  keepLatencies?: boolean
}): Promise<{ ok: number; sent: number; non2xx: number; transportErrors: number; elapsedMs: number; latencyMs: { count: number; p50: number | null; p99: number | null; max: number | null } }>
