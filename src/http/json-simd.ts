/**
 * The validating scan's walk over a string, sixteen bytes a compare in WebAssembly SIMD: from after an opening quote
 * to its closing quote, past each escape (checked as JSON.parse checks it). The module is written here byte by byte
 * (no toolchain) and compiled once, by the first body held: one function, `stringEnd`, over a body copied into the module's memory.
 * The memory is made at its full size (room for MAX_HELD_BYTES) and never grows: growing a wasm memory detaches its
 * old ArrayBuffer, which invalidates V8's ArrayBufferDetaching protector for the whole process (every optimized
 * typed-array access, a Buffer's included, then checks for a detached buffer, and the code that relied on it is
 * thrown away). Its pages are resident only once a body has touched them: at most ~1 MiB at idle, as before.
 */

/** The largest body held in wasm memory: the largest a validating scan reads (BIG_BODY_BYTES); a larger one stays on the JS path. */
export const MAX_HELD_BYTES = 1024 * 1024

// Memory: the escape table (what may follow a backslash), the hex table, stringEnd's three constant vectors, then the
// body held from BASE on.
const ESCAPE_TABLE = 0
const HEX_TABLE = 256
const FLIP_VECTOR = 512
const BACKSLASH_VECTOR = 528
const SPACE_VECTOR = 544
const BASE = 576
// Past a body's last byte the function loads up to 21 bytes (an escape's six, then sixteen) of whatever the memory holds.
const TAIL_BYTES = 32
const PAGE_BYTES = 65536
/** The memory's pages from the start: the tables, the largest body held and its tail, so holdBody never grows it. */
const MEMORY_PAGES = Math.ceil((BASE + MAX_HELD_BYTES + TAIL_BYTES) / PAGE_BYTES)
// Escape table entries: 0 where JSON has no such escape.
const SIMPLE = 1
const UNICODE = 2

/** Unsigned LEB128, as the binary format spells counts, sizes and indices. */
function leb(n: number): number[] {
  const out: number[] = []
  do {
    let byte = n & 0x7f
    n >>>= 7
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

/** Signed LEB128, as i32.const spells its value. */
function sleb(n: number): number[] {
  const out: number[] = []
  for (;;) {
    const byte = n & 0x7f
    n >>= 7
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte]
    out.push(byte | 0x80)
  }
}

/** A section: its id, its size, its contents. */
const section = (id: number, contents: number[]): number[] => [id, ...leb(contents.length), ...contents]
/** A vector: its count, its items. */
const vector = (items: number[][]): number[] => [...leb(items.length), ...items.flat()]
const name = (text: string): number[] => [...leb(text.length), ...Buffer.from(text, 'latin1')]

// Value types.
const I32 = 0x7f
const V128 = 0x7b
// Instructions.
const LOOP = 0x03
const IF = 0x04
const ELSE = 0x05
const EMPTY = 0x40 // block type: no value
const END = 0x0b
const BR = 0x0c
const BR_IF = 0x0d
const RETURN = 0x0f
const LOCAL_GET = 0x20
const LOCAL_SET = 0x21
const LOCAL_TEE = 0x22
const I32_LOAD8_U = 0x2d // memarg: log2 alignment, offset
const I32_CONST = 0x41
const I32_EQZ = 0x45
const I32_EQ = 0x46
const I32_NE = 0x47
const I32_LT_U = 0x49
const I32_GE_U = 0x4f
const I32_CTZ = 0x68
const I32_ADD = 0x6a
const I32_SUB = 0x6b
const I32_AND = 0x71
const I32_OR = 0x72
const I32_SHL = 0x74
// SIMD instructions: the prefix, then the opcode (each below 0x80: one LEB byte).
const SIMD = 0xfd
const V128_LOAD = 0x00 // memarg
const I8X16_EQ = 0x23
const V128_OR = 0x50
const V128_XOR = 0x51
const I8X16_BITMASK = 0x64
const I8X16_MIN_U = 0x77

const constant = (n: number): number[] => [I32_CONST, ...sleb(n)]
/** The byte at `offset` past the address on the stack. */
const loadByte = (offset: number): number[] => [I32_LOAD8_U, 0, ...leb(offset)]
/** The sixteen bytes at `at` (a constant vector of the memory's head), loaded. */
const vectorAt = (at: number): number[] => [...constant(0), SIMD, V128_LOAD, 4, ...leb(at)]

const QUOTE = 0x22
const BACKSLASH = 0x5c

// stringEnd's locals: its parameters k and length, then the others.
const K = 0
const LENGTH = 1
const MASK = 2
const BYTES = 3
const AT = 4
const ESCAPED = 5
const BYTE = 6
const FLIP = 7
const BACKSLASHES = 8
const SPACES = 9

/**
 * stringEnd(k, length): k is one past an opening quote (k <= length). The closing quote's index times two, plus one
 * when the string has an escape; -1 where JSON.parse refuses the string (a control byte, an escape JSON has not, the
 * body's end first). Sixteen bytes a step from k: a lane's bit set where its byte is a quote, a backslash or a control
 * byte, the lowest set bit's lane the one met first; one met at or past `length` (a load past the body) ends it. An
 * escape that ends inside the sixteen clears its lanes from the mask and the walk reads the mask's next set bit, with
 * no new load: code has an escaped line end every ~50 bytes, and a load from past each escape made such a string's
 * walk 1.6 times as long (2.7 with an escape every four bytes): each load waited on the escape's bytes. Tried and dropped:
 * the byte met told by a quote mask and a backslash mask (two more compares a load) instead of its load, in-process medians
 * both orders 33 KB 21.4 -> 21.8, 21.9 -> 23.0 us, 131 KB 74.7 -> 78.0, 76.3 -> 79.3 us.
 */
const STRING_END: number[] = [
  ...vector([[1, I32], [1, V128], [3, I32], [3, V128]]), // mask; bytes; at, escaped, byte; flip, backslashes, spaces
  // In locals: V8's optimizing tier makes a v128.const inside the loop anew on every pass (a plain string walked 1.5 times
  // as long). Loaded from memory, not made by v128.const: a load each, where each const took a few instructions a call.
  ...vectorAt(FLIP_VECTOR), LOCAL_SET, FLIP, ...vectorAt(BACKSLASH_VECTOR), LOCAL_SET, BACKSLASHES, ...vectorAt(SPACE_VECTOR), LOCAL_SET, SPACES,
  LOOP, EMPTY, // the next sixteen bytes, from k
  LOCAL_GET, K, SIMD, V128_LOAD, 0, ...leb(BASE), LOCAL_TEE, BYTES,
  LOCAL_GET, BACKSLASHES, SIMD, I8X16_EQ,
  // A quote or a control byte: with bit 1 flipped, a byte of at most 0x20 (as the JS walk's specialBits tests it).
  LOCAL_GET, BYTES, LOCAL_GET, FLIP, SIMD, V128_XOR, LOCAL_TEE, BYTES,
  LOCAL_GET, SPACES, SIMD, I8X16_MIN_U, LOCAL_GET, BYTES, SIMD, I8X16_EQ,
  SIMD, V128_OR,
  SIMD, I8X16_BITMASK, LOCAL_TEE, MASK,
  IF, EMPTY,
  LOOP, EMPTY, // the mask's lowest set bit
  LOCAL_GET, K, LOCAL_GET, MASK, I32_CTZ, I32_ADD, LOCAL_TEE, AT,
  LOCAL_GET, LENGTH, I32_GE_U, IF, EMPTY, ...constant(-1), RETURN, END,
  LOCAL_GET, AT, ...loadByte(BASE), LOCAL_TEE, BYTE, // the byte met
  ...constant(QUOTE), I32_EQ, IF, EMPTY,
  LOCAL_GET, AT, ...constant(1), I32_SHL, LOCAL_GET, ESCAPED, I32_OR, RETURN,
  END,
  LOCAL_GET, BYTE, ...constant(BACKSLASH), I32_NE, IF, EMPTY, ...constant(-1), RETURN, END,
  ...constant(1), LOCAL_SET, ESCAPED,
  // The escape's kind, by the byte after the backslash.
  LOCAL_GET, AT, ...loadByte(BASE + 1), ...loadByte(ESCAPE_TABLE), LOCAL_TEE, BYTE,
  I32_EQZ, IF, EMPTY, ...constant(-1), RETURN, END,
  LOCAL_GET, BYTE, ...constant(UNICODE), I32_EQ,
  IF, EMPTY,
  // \u and four hex digits.
  LOCAL_GET, AT, ...loadByte(BASE + 2), ...loadByte(HEX_TABLE),
  LOCAL_GET, AT, ...loadByte(BASE + 3), ...loadByte(HEX_TABLE), I32_AND,
  LOCAL_GET, AT, ...loadByte(BASE + 4), ...loadByte(HEX_TABLE), I32_AND,
  LOCAL_GET, AT, ...loadByte(BASE + 5), ...loadByte(HEX_TABLE), I32_AND,
  I32_EQZ, IF, EMPTY, ...constant(-1), RETURN, END,
  LOCAL_GET, AT, ...constant(6), I32_ADD, LOCAL_SET, AT,
  ELSE,
  LOCAL_GET, AT, ...constant(2), I32_ADD, LOCAL_SET, AT,
  END,
  // at: one past the escape, `byte` lanes past k. Outside the sixteen: a load from there; inside: its lanes cleared.
  LOCAL_GET, AT, LOCAL_GET, K, I32_SUB, LOCAL_TEE, BYTE, ...constant(16), I32_GE_U,
  IF, EMPTY, LOCAL_GET, AT, LOCAL_SET, K, BR, 3, END, // to the load
  LOCAL_GET, MASK, ...constant(-1), LOCAL_GET, BYTE, I32_SHL, I32_AND, LOCAL_TEE, MASK,
  BR_IF, 0, // to the mask's next set bit, if any
  END,
  END,
  LOCAL_GET, K, ...constant(16), I32_ADD, LOCAL_TEE, K, LOCAL_GET, LENGTH, I32_LT_U, BR_IF, 0,
  END,
  ...constant(-1),
  END,
]

/** The memory's head: what may follow a backslash, the hex digits, and stringEnd's constant vectors. */
function tables(): number[] {
  const out = new Array<number>(BASE).fill(0)
  out.fill(0x02, FLIP_VECTOR, FLIP_VECTOR + 16)
  out.fill(BACKSLASH, BACKSLASH_VECTOR, BACKSLASH_VECTOR + 16)
  out.fill(0x20, SPACE_VECTOR, SPACE_VECTOR + 16)
  for (const c of '"\\/bfnrt') out[ESCAPE_TABLE + c.charCodeAt(0)] = SIMPLE
  out[ESCAPE_TABLE + 0x75] = UNICODE
  for (const c of '0123456789abcdefABCDEF') out[HEX_TABLE + c.charCodeAt(0)] = 1
  return out
}

/** The module: one memory (exported as `memory`, its tables written at instantiation) and `stringEnd`. */
function moduleBytes(): Uint8Array {
  const type = [0x60, ...vector([[I32], [I32]]), ...vector([[I32]])] // (i32, i32) -> i32
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, // magic: \0asm
    0x01, 0x00, 0x00, 0x00, // version 1
    ...section(1, vector([type])), // types
    ...section(3, vector([leb(0)])), // functions: one, of type 0
    ...section(5, vector([[0x00, ...leb(MEMORY_PAGES)]])), // memories: one, of MEMORY_PAGES at first, no maximum
    ...section(7, vector([[...name('stringEnd'), 0x00, ...leb(0)], [...name('memory'), 0x02, ...leb(0)]])), // exports
    ...section(10, vector([[...leb(STRING_END.length), ...STRING_END]])), // code
    ...section(11, vector([[0x00, ...constant(0), END, ...leb(BASE), ...tables()]])), // data: the tables, at 0
  ]
  return Uint8Array.from(bytes)
}

/** The few members of the WebAssembly API used here (the project's TypeScript lib has no declarations for it). */
interface Wasm {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { exports: { stringEnd: (k: number, length: number) => number; memory: { buffer: ArrayBuffer } } }
}
type Exports = InstanceType<Wasm['Instance']>['exports']

// Instantiated by the first body held, not at load: V8's wasm engine and the instance cost a process ~1.3 MiB of
// resident memory (a proxy that never reads a body of 16 KiB or more never pays it).
let memory: Exports['memory'] | null = null

/**
 * In the body held: the closing quote's index of the string whose opening quote is at `k - 1`, times two, plus one
 * when the string has an escape; -1 where JSON.parse refuses the string. `length`: the body's length. Set by the
 * first holdBody (called only once a body is held).
 */
export let stringEnd: (k: number, length: number) => number = () => {
  throw new Error('stringEnd before a body was held')
}

let bytes = new Uint8Array(0)
/** The hold whose body the memory holds (0: none), and the last hold given. */
let holder = 0
let holds = 0

/**
 * Makes the memory hold `raw` from `from` on (bytes before it are left as they are: a scan reads no further back) for
 * the hold `hold` (0: a new one), recopying it when another hold has been made since. Gives the hold, or 0 when
 * `raw` is longer than MAX_HELD_BYTES (no hold: the JS path reads it).
 */
export function holdBody(raw: Buffer, from: number, hold: number): number {
  if (raw.length > MAX_HELD_BYTES) return 0
  if (hold !== 0 && hold === holder) return hold
  // The memory was made with room for MAX_HELD_BYTES and its tail (MEMORY_PAGES): it is never grown.
  if (memory === null) instantiate()
  bytes.set(raw.subarray(from), BASE + from)
  holder = hold !== 0 ? hold : ++holds
  return holder
}

/** The module's instance, made once: sets `stringEnd`, the memory and its bytes. */
function instantiate(): void {
  const api = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly
  const { exports } = new api.Instance(new api.Module(moduleBytes()))
  memory = exports.memory
  bytes = new Uint8Array(memory.buffer)
  stringEnd = exports.stringEnd
}
