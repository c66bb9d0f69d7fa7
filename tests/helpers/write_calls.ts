/**
 * Calls of the two writes of mla_kv.h as data, and a runner that makes them across the real FFI
 * in a child process against a chosen library (the host fixture or the built libmla_kv), so one
 * table of arguments can be checked against both.
 *
 * Arguments are named as in the header. Device pointers are named buffers (plus a byte offset)
 * rather than numbers: in a child that only checks arguments they stand for fixed fake addresses,
 * where calls must be refused before anything is read; where calls run (the host fixture) they are
 * real allocations. A raw address may still be given as a number, or as a bigint when it lies
 * above 2^53 (an address the binding's number-typed pointers cannot carry; such calls go through
 * a binding that passes the pointers as 64-bit integers).
 */
import { MLA_KV_FORMAT_FP8_DS_MLA, MLA_KV_PATH_VECTOR, MLA_KV_SOURCE_BF16 } from "../../ffi/abi.ts";
import { describeChild, runInChild } from "./run_in_child.ts";

/** A device pointer into one of the four buffers of a write. */
export interface BufferPointer {
  buffer: "cache" | "loc" | "nope" | "rope";
  offset?: number;
}
export type CallArg = number | bigint | BufferPointer;

const at = (buffer: BufferPointer["buffer"], offset = 0): BufferPointer => ({ buffer, offset });
export const cachePtr = (offset = 0) => at("cache", offset);
export const locPtr = (offset = 0) => at("loc", offset);
export const nopePtr = (offset = 0) => at("nope", offset);
export const ropePtr = (offset = 0) => at("rope", offset);

/** A good bf16 512 + 64 copy of 2 rows into a 64-row cache, int64 loc, the vector path. */
export const COPY_DEFAULTS = {
  device: 0,
  stream: 0,
  cache: cachePtr() as CallArg,
  capacity: 64 as number | bigint,
  cache_row_stride: 1152 as number | bigint,
  loc: locPtr() as CallArg,
  loc_elem_bytes: 8,
  n: 2 as number | bigint,
  nope: nopePtr() as CallArg,
  nope_row_stride: 1024 as number | bigint,
  nope_bytes: 1024 as number | bigint,
  rope: ropePtr() as CallArg,
  rope_row_stride: 128 as number | bigint,
  rope_bytes: 128 as number | bigint,
  reserved_slot: -1 as number | bigint,
  path: MLA_KV_PATH_VECTOR,
  warps_per_block: 4,
  rows_per_warp: 1,
  flags: 0,
};

/** A good ds_mla write of 2 bf16 rows (512 + 64) into a 64-row cache, the vector path. */
export const QUANTIZED_DEFAULTS = {
  device: 0,
  stream: 0,
  format: MLA_KV_FORMAT_FP8_DS_MLA,
  scale_rule: 0,
  cache: cachePtr() as CallArg,
  capacity: 64 as number | bigint,
  cache_row_stride: 656 as number | bigint,
  page_size: 0 as number | bigint,
  loc: locPtr() as CallArg,
  loc_elem_bytes: 8,
  n: 2 as number | bigint,
  source_dtype: MLA_KV_SOURCE_BF16,
  nope: nopePtr() as CallArg,
  nope_row_stride: 1024 as number | bigint,
  nope_elems: 512 as number | bigint,
  rope: ropePtr() as CallArg,
  rope_row_stride: 128 as number | bigint,
  rope_elems: 64 as number | bigint,
  scale: 1,
  reserved_slot: -1 as number | bigint,
  path: MLA_KV_PATH_VECTOR,
  warps_per_block: 4,
  rows_per_warp: 1,
  flags: 0,
};

export type WriteFunction = "mla_kv_set_kv_buffer" | "mla_kv_set_kv_buffer_quantized";

/** One call: the function and its arguments in the header's order. */
export interface WriteCall {
  fn: WriteFunction;
  args: CallArg[];
}

// The defaults' keys are in the header's order, and overriding keeps that order.
export function copyCall(overrides: Partial<typeof COPY_DEFAULTS> = {}): WriteCall {
  return { fn: "mla_kv_set_kv_buffer", args: Object.values({ ...COPY_DEFAULTS, ...overrides }) };
}

export function quantizedCall(overrides: Partial<typeof QUANTIZED_DEFAULTS> = {}): WriteCall {
  return { fn: "mla_kv_set_kv_buffer_quantized", args: Object.values({ ...QUANTIZED_DEFAULTS, ...overrides }) };
}

/** What one call returned: its status and, when it failed, mla_kv_last_error(). */
export interface CallResult {
  status: number;
  message: string;
}

/**
 * Makes `calls` in order in one child process with `library` loaded through MLA_KV_LIBRARY.
 * `allocate`: back the named buffers with 1 MiB allocations of the library (for the host
 * fixture, whose good writes really copy); otherwise they are fake addresses nothing may touch.
 */
export function runWriteCalls(library: string, calls: WriteCall[], allocate: boolean, env: Record<string, string> = {}): CallResult[] {
  // JSON has neither bigints nor NaN and the infinities (it would turn them into null).
  const encoded = JSON.stringify(calls, (_key, value) =>
    typeof value === "bigint" ? { bigint: value.toString() } : typeof value === "number" && !Number.isFinite(value) ? { float: String(value) } : value);
  const result = runInChild(
    `
    const { native } = await import(root + "/ffi/native.ts");
    const { MLA_KV_SYMBOLS } = await import(root + "/ffi/symbols.ts");
    const lib = native();
    const calls = JSON.parse(${JSON.stringify(encoded)}, (_key, value) =>
      value === null || typeof value !== "object" ? value
        : typeof value.bigint === "string" ? BigInt(value.bigint)
        : typeof value.float === "string" ? Number(value.float)
        : value);
    const FAKE = { cache: 0x7f0000000000, loc: 0x7f0010000000, nope: 0x7f0020000000, rope: 0x7f0030000000 };
    const bases = {};
    for (const name of Object.keys(FAKE)) {
      if (!${allocate}) { bases[name] = FAKE[name]; continue; }
      const out = new BigUint64Array(1);
      if (lib.mla_kv_malloc(0, 1 << 20, out) !== 0) throw new Error("mla_kv_malloc: " + lib.mla_kv_last_error());
      bases[name] = Number(out[0]);
    }
    // Pointers above 2^53 travel as 64-bit integers through a binding of the same library.
    let wide;
    const wideSymbols = () => {
      if (wide) return wide;
      const { dlopen } = require("bun:ffi");
      const kinds = { i32: "i32", i64: "i64", u64: "u64", f32: "f32", devptr: "u64", buffer: "ptr" };
      const declare = (name) => ({ args: MLA_KV_SYMBOLS[name].args.map((k) => kinds[k]), returns: "i32" });
      wide = dlopen(process.env.MLA_KV_LIBRARY, {
        mla_kv_set_kv_buffer: declare("mla_kv_set_kv_buffer"),
        mla_kv_set_kv_buffer_quantized: declare("mla_kv_set_kv_buffer_quantized"),
      }).symbols;
      return wide;
    };
    return calls.map(({ fn, args }) => {
      const values = args.map((a) => (a !== null && typeof a === "object" ? bases[a.buffer] + (a.offset ?? 0) : a));
      const kinds = MLA_KV_SYMBOLS[fn].args;
      const needsWide = values.some((v, i) => kinds[i] === "devptr" && typeof v === "bigint");
      const status = needsWide ? wideSymbols()[fn](...values) : lib[fn](...values);
      return { status, message: status === 0 ? "" : lib.mla_kv_last_error() };
    });
  `,
    { MLA_KV_LIBRARY: library, ...env },
  );
  if (!Array.isArray(result.value)) throw new Error(`the child did not return results:\n${describeChild(result)}\n${JSON.stringify(result.error)}`);
  return result.value as CallResult[];
}
