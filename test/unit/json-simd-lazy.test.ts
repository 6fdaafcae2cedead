import { afterEach, describe, expect, it, vi } from 'vitest'

// Issue 12: V8's wasm engine and the module's instance cost a process ~1.3 MiB of resident memory, so the module is
// instantiated by the first body held, not when the scan's modules load (idle memory of a proxy that never reads a
// body of 16 KiB or more).

/** The one member of the WebAssembly API counted here (the project's TypeScript lib has no declarations for it). */
type InstanceClass = new (module: object, imports?: object) => object
const wasm = (globalThis as unknown as { WebAssembly: { Instance: InstanceClass } }).WebAssembly

describe('the wasm string walk is instantiated on first use', () => {
  const real = wasm.Instance
  afterEach(() => {
    wasm.Instance = real
    vi.resetModules()
  })

  it('loads without an instance, makes one at the first body held, and only one', async () => {
    vi.resetModules()
    let made = 0
    wasm.Instance = class extends real {
      constructor(module: object, imports?: object) {
        super(module, imports)
        made++
      }
    }
    const simd = await import('../../src/http/json-simd.js')
    await import('../../src/http/json-scan.js')
    expect(made).toBe(0)
    const body = Buffer.from(`"${'x'.repeat(40)}" `)
    const hold = simd.holdBody(body, 0, 0)
    expect(hold).toBeGreaterThan(0)
    expect(made).toBe(1)
    expect(simd.stringEnd(1, body.length)).toBe(2 * 41)
    simd.holdBody(Buffer.from(`"${'y'.repeat(70_000)}"`), 0, 0)
    expect(made).toBe(1)
  })
})
