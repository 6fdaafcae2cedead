import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** The preload (`NODE_OPTIONS=--import …`) that records a proxy process's long main-thread CPU stretches. */
export const LOOP_CPU_PROBE = fileURLToPath(new URL('./loop-cpu-probe.mjs', import.meta.url))

/** The longest main-thread CPU stretch the probe recorded in `probeFile` while `run` ran (0 when none passed 1 ms). */
export async function longestStretch<T>(probeFile: string, run: () => Promise<T>): Promise<{ result: T; cpuMs: number }> {
  const from = Date.now()
  const result = await run()
  await new Promise((resolve) => setTimeout(resolve, 50))
  const lines = readFileSync(probeFile, 'utf8').split('\n').filter((l) => l.length > 0)
  const stretches = lines.map((l) => JSON.parse(l) as { at: number; cpuMs: number }).filter((s) => s.at >= from)
  return { result, cpuMs: Math.max(0, ...stretches.map((s) => s.cpuMs)) }
}
