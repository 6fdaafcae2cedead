import { describe, expect, it } from 'vitest'
import { assembleCountBody, type CountSource } from '../../src/proxy/count-body.js'

/** A source whose members are given as JSON text or raw bytes (as a big body's spans are). */
const source = (members: Record<string, string | Buffer>, whole = Buffer.from('{}')): CountSource => ({
  member: (key) => members[key],
  edited: async () => whole,
})

describe('count request bodies', () => {
  it('wraps the members present, in the order named, after the extra members, with one comma between each', async () => {
    const shape = { kind: 'members', open: '{"generateContentRequest":{', extra: ['"model":"models/m"'], fields: ['contents', 'tools', 'systemInstruction'], close: '}}' } as const
    const built = await assembleCountBody(shape, source({ systemInstruction: Buffer.from(' {"parts":[]} '), contents: '[{"parts":[{"text":"é"}]}]' }))
    expect(JSON.parse(built.toString('utf8'))).toEqual({ generateContentRequest: { model: 'models/m', contents: [{ parts: [{ text: 'é' }] }], systemInstruction: { parts: [] } } })
    expect(Object.keys(JSON.parse(built.toString('utf8')).generateContentRequest)).toEqual(['model', 'contents', 'systemInstruction'])
    expect((await assembleCountBody({ ...shape, extra: [] }, source({}))).toString()).toBe('{"generateContentRequest":{}}')
    expect((await assembleCountBody({ kind: 'members', open: '{', extra: [], fields: ['a', 'b'], close: '}' }, source({ b: '1' }))).toString()).toBe('{"b":1}')
  })

  it('base64-encodes the forwarded body in slices that join into its one encoding, whatever its length', async () => {
    for (const length of [0, 1, 2, 3, (3 << 15) - 1, 3 << 15, (3 << 15) + 1, 5 * (3 << 15) + 2]) {
      const whole = Buffer.alloc(length)
      for (let i = 0; i < length; i++) whole[i] = (i * 7919) & 0xff
      const built = await assembleCountBody({ kind: 'base64', open: '{"body":"', close: '"}' }, source({}, whole))
      expect((JSON.parse(built.toString('latin1')) as { body: string }).body).toBe(whole.toString('base64'))
    }
  })
})
