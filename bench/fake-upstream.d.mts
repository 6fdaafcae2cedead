/** Types of the parts of bench/fake-upstream.mjs its tests use. */
import type { Server } from 'node:http'
export function createFakeUpstream(initial?: Record<string, unknown>): { server: Server; readonly ledger: Record<string, unknown> }
