import { describe, expect, it } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { DeviceTensor } from "../../src/tensor.ts";
import { setMlaKvBuffer, validateSetMlaKvBufferOptions } from "../../src/set_mla_kv_buffer.ts";
import { Stream } from "../../src/stream.ts";
import { fake } from "../helpers/fake_tensors.ts";
import { hostLibrary, hostLibraryFailure } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";
import { thrown } from "../helpers/thrown.ts";

function write(n = 2) {
  return [fake("bf16", [64, 576]), fake("i64", [n]), fake("bf16", [n, 512]), fake("bf16", [n, 64])] as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];
}

describe("setMlaKvBuffer options", () => {
  const bad: Array<[string, unknown, string, string]> = [
    ["refuses an unknown option, naming it and the known ones", { rowPerWarp: 2 }, "options.rowPerWarp", "unknown option; the options are stream, path, warps, rowsPerWarp, device, pdl, reservedSlot, format, scale, pageSize, scaleRule"],
    ["refuses a path that is not auto or one of the four designs", { path: "fast" }, "options.path", 'expected one of "auto", "vector", "tma", "specialized", "spread", got "fast"'],
    ["refuses a path given as its code", { path: 2 }, "options.path", "got 2"],
    ["refuses 3 warps", { warps: 3 }, "options.warps", "expected 1, 2, 4, 8, 16, got 3"],
    ["refuses 0 warps, which only the spread path has and which it sets itself", { warps: 0 }, "options.warps", "got 0"],
    ["refuses a pdl option that is not a boolean", { pdl: 1 }, "options.pdl", "expected true or false, got 1"],
    ["refuses 32 warps", { warps: 32 }, "options.warps", "got 32"],
    ["refuses warps given as a string", { warps: "8" }, "options.warps", 'got "8"'],
    ["refuses 8 rows per warp", { rowsPerWarp: 8 }, "options.rowsPerWarp", "expected 1, 2, 4, got 8"],
    ["refuses a stream that is not a Stream", { stream: 0 }, "options.stream", "expected a Stream, got 0"],
    ["refuses a negative device", { device: -1 }, "options.device", "expected a device index"],
    ["refuses options that are not an object", "fast", "options", 'expected a plain options object ({ … }), got "fast"'],
    ["refuses options given as a Map instead of reading them as none", new Map([["path", "tma"]]), "options", "got a Map"],
    ["refuses options given as a class instance", new (class WriteOptions { path = "tma"; })(), "options", "got a WriteOptions"],
    ["refuses options given as null", null, "options", "got null"],
    ["refuses options given as an array", [], "options", "expected a plain options object"],
    ["refuses a negative reserved slot", { reservedSlot: -1 }, "options.reservedSlot", "expected a slot index (an integer >= 0) or null for none, got -1"],
    ["refuses a fractional reserved slot", { reservedSlot: 1.5 }, "options.reservedSlot", "got 1.5"],
    ["refuses an unknown format", { format: "fp4" }, "options.format", 'expected one of "copy", "fp8", "fp8_ds_mla", "fp8_ds_v4", "fp8_indexer", got "fp4"'],
    ["refuses a format named by the cache's fp8 dtype, which \"fp8\" stands for", { format: "fp8_e4m3" }, "options.format", 'got "fp8_e4m3"'],
    ["refuses a page size of 0", { pageSize: 0 }, "options.pageSize", "expected the tokens a page (a whole number >= 1), got 0"],
    ["refuses a fractional page size", { pageSize: 1.5 }, "options.pageSize", "got 1.5"],
    ["refuses a page size given as a string", { pageSize: "64" }, "options.pageSize", 'got "64"'],
    ["refuses an unknown scale rule", { scaleRule: "max" }, "options.scaleRule", 'expected one of "pow2", "amax", "ue8m0", got "max"'],
    ["refuses a scale of 0", { scale: 0 }, "options.scale", "expected a finite number > 0 that fp32 can hold"],
    ["refuses a scale fp32 rounds to 0", { scale: 1e-50 }, "options.scale", "got 1e-50"],
    ["refuses a scale fp32 rounds to infinity", { scale: 1e39 }, "options.scale", "got 1e+39"],
    ["refuses a NaN scale", { scale: NaN }, "options.scale", "got NaN"],
  ];
  for (const [sentence, options, argument, fragment] of bad) {
    it(sentence, () => {
      const error = thrown(() => setMlaKvBuffer(...write(), options as never));
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe(argument);
      expect(error.message).toContain(fragment);
    });
  }

  it("asks for the per-tensor scale when bf16 sources go into an fp8 cache", () => {
    const [, loc, kNope, kRope] = write(2);
    const error = thrown(() => setMlaKvBuffer(fake("fp8_e4m3", [64, 576]), loc, kNope, kRope));
    expect(error.argument).toBe("options.scale");
    expect(error.message).toContain("a bf16 → fp8_e4m3 write quantizes each element as x / scale; pass the per-tensor scale (1 for none)");
  });

  it("refuses a scale for each tile-scaled format, whose scales are per tile", () => {
    const [, loc, kNope, kRope] = write(2);
    const dsMla = thrown(() => setMlaKvBuffer(fake("u8", [64, 656]), loc, kNope, kRope, { format: "fp8_ds_mla", scale: 2 }));
    expect([dsMla.argument, dsMla.message]).toEqual(["options.scale", "options.scale: the fp8_ds_mla format computes a scale per tile; it takes no per-tensor scale"]);
    const v4 = thrown(() => setMlaKvBuffer(fake("u8", [1, 37440]), fake("i32", [2]), fake("bf16", [2, 448]), fake("bf16", [2, 64]), { format: "fp8_ds_v4", pageSize: 64, scale: 2 }));
    expect(v4.message).toContain("the fp8_ds_v4 format computes a scale per tile");
  });

  it("refuses a scale for a byte copy", () => {
    const error = thrown(() => setMlaKvBuffer(...write(2), { scale: 2 }));
    expect(error.argument).toBe("options.scale");
    expect(error.message).toContain("this write copies bytes");
  });

  it("refuses a reserved slot past the cache's capacity", () => {
    const error = thrown(() => setMlaKvBuffer(...write(2), { reservedSlot: 64 }));
    expect(error.argument).toBe("options.reservedSlot");
    expect(error.message).toContain("expected a slot of kvBuffer (below its capacity 64), got 64");
  });

  it("treats options set to undefined as absent", () => {
    expect(() => validateSetMlaKvBufferOptions({ stream: undefined, path: undefined, warps: undefined, pageSize: undefined, scaleRule: undefined })).not.toThrow();
  });

  it("accepts every path, warp count, row count, format and scale rule by name", () => {
    for (const path of ["auto", "vector", "tma", "specialized", "spread"]) expect(() => validateSetMlaKvBufferOptions({ path })).not.toThrow();
    for (const warps of [1, 2, 4, 8, 16]) expect(() => validateSetMlaKvBufferOptions({ warps })).not.toThrow();
    for (const rowsPerWarp of [1, 2, 4]) expect(() => validateSetMlaKvBufferOptions({ rowsPerWarp })).not.toThrow();
    for (const format of ["copy", "fp8", "fp8_ds_mla", "fp8_ds_v4", "fp8_indexer"]) expect(() => validateSetMlaKvBufferOptions({ format })).not.toThrow();
    for (const scaleRule of ["pow2", "amax", "ue8m0"]) expect(() => validateSetMlaKvBufferOptions({ scaleRule })).not.toThrow();
  });

  it("refuses a stream of another device than the tensors", () => {
    const error = thrown(() => setMlaKvBuffer(...write(), { stream: Stream.default(1) }));
    expect(error.argument).toBe("options.stream");
    expect(error.message).toContain("expected a stream on device 0, got one on device 1");
  });

  it("checks the plan's options (page size, scale rule) against the format before anything runs", () => {
    const error = thrown(() => setMlaKvBuffer(...write(2), { scaleRule: "amax" }));
    expect(error.argument).toBe("options.scaleRule");
    expect(error.message).toContain("this write is copy");
  });

  it("validates the tensors even when there is nothing to write", () => {
    const [kvBuffer, loc, kNope] = write(0);
    expect(thrown(() => setMlaKvBuffer(kvBuffer, loc, kNope, fake("fp16", [0, 64]))).argument).toBe("kRope");
  });
});

// Everything below crosses the real FFI into a CPU implementation of mla_kv.h, in a child process
// (the library is chosen once per process).
const host = hostLibrary();
const freshDir = tempDirs("mla-kv-write-");
const freshLog = () => join(freshDir(), "calls.log");
const hostReason = host ? "" : ` (skipped: the C fixture did not build: ${hostLibraryFailure().split("\n")[0]})`;


/** The fields of each write call a HOST_MLA_KV_LOG file recorded, one record a call. */
function loggedCalls(log: string): Array<Record<string, string>> {
  if (!existsSync(log)) return [];
  return readFileSync(log, "utf8")
    .trim()
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => Object.fromEntries(line.split(" ").filter((w) => w.includes("=")).map((w) => w.split("=") as [string, string])));
}

/** The launch of a logged call: n, path code, warps, rows per warp and flags. */
const launchOf = (call: Record<string, string>) => `n=${call.n} path=${call.path} warps=${call.warps_per_block} rows=${call.rows_per_warp} flags=${call.flags}`;

/**
 * A child-body snippet that allocates the tensors of a write that launches but writes no row: kv
 * of shape `cache`, kNope [n, nope] and kRope [n, rope] of `dtype`, and a loc of n padding rows.
 */
function tensors(cache: readonly number[], n: number, nope: number, rope: number, dtype = "bf16", cacheDtype = dtype): string {
  return `
    using kv = m.allocTensor("${cacheDtype}", ${JSON.stringify(cache)});
    using kNope = m.allocTensor("${dtype}", [${n}, ${nope}]);
    using kRope = m.allocTensor("${dtype}", [${n}, ${rope}]);
    using loc = m.fromHost(new Int32Array(${n}).fill(-1), "i32", [${n}]);`;
}

describe.skipIf(!host)(`setMlaKvBuffer against the host implementation of the ABI${hostReason}`, () => {
  // The built-in rule, not a tune: the host implementation has no GPU to time.
  const env = (extra: Record<string, string> = {}) => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", MLA_KV_CACHE_DIR: freshDir(), ...extra });

  it("writes nope then rope into the rows named by loc, skipping padding and leaving the row tail alone", () => {
    const result = runInChild(`
      const n = 3;
      using kv = m.allocTensor("bf16", [8, 2, 8]);            // 16 slots, 8 columns
      kv.upload(new Uint16Array(16 * 8).fill(0xeeee));
      using nope = m.fromHost(Uint16Array.from({ length: n * 4 }, (_, i) => 100 + i), "bf16", [n, 4]);
      using rope = m.fromHost(Uint16Array.from({ length: n * 2 }, (_, i) => 200 + i), "bf16", [n, 2]);
      using loc = m.fromHost(new BigInt64Array([5n, -1n, 12n]), "i64", [n]);
      m.setMlaKvBuffer(kv, loc, nope, rope);
      const cache = kv.download();
      return { row5: [...cache.subarray(40, 48)], row12: [...cache.subarray(96, 104)], untouched: cache.filter((x) => x === 0xeeee).length };
    `, env());
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(result.value).toEqual({
      row5: [100, 101, 102, 103, 200, 201, 0xeeee, 0xeeee],
      row12: [108, 109, 110, 111, 204, 205, 0xeeee, 0xeeee],
      untouched: 16 * 8 - 12,
    });
  });

  it("reads strided sources from the two parts of one wider tensor", () => {
    const result = runInChild(`
      using kv = m.allocTensor("u8", [4, 6]);
      using wide = m.fromHost(Uint8Array.from({ length: 2 * 10 }, (_, i) => i), "u8", [2, 10]);
      using loc = m.fromHost(new Int32Array([3, 0]), "i32", [2]);
      m.setMlaKvBuffer(kv, loc, wide.narrow(1, 0, 4), wide.narrow(1, 7, 2));
      const cache = kv.download();
      return { row3: [...cache.subarray(18, 24)], row0: [...cache.subarray(0, 6)] };
    `, env());
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(result.value).toEqual({ row3: [0, 1, 2, 3, 7, 8], row0: [10, 11, 12, 13, 17, 18] });
  });

  it("passes the plan, the dispatch choice and the PDL flag (on unless turned off) across the FFI argument by argument", () => {
    const log = freshLog();
    const result = runInChild(`
      using stream = m.Stream.create();
      using kv = m.allocTensor("bf16", [4, 16, 576]);
      using nope = m.allocTensor("bf16", [1000, 512]);
      using rope = m.allocTensor("bf16", [1000, 64]);
      using loc = m.fromHost(new BigInt64Array(1000).fill(-1n), "i64", [1000]);
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream });
      m.setMlaKvBuffer(kv, loc.narrow(0, 0, 3), nope.narrow(0, 0, 3), rope.narrow(0, 0, 3));
      m.setMlaKvBuffer(kv, loc, nope, rope, { path: "vector", rowsPerWarp: 4, pdl: false });
      return { stream: stream.handle, kv: kv.ptr, loc: loc.ptr, nope: nope.ptr, rope: rope.ptr };
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    const p = result.value as Record<string, number>;
    const lines = readFileSync(log, "utf8").trim().split("\n");
    const args = (stream: number, n: number) =>
      `device=0 stream=${stream} cache=${p.kv} capacity=64 cache_row_stride=1152 loc=${p.loc} loc_elem_bytes=8 n=${n} nope=${p.nope} nope_row_stride=1024 nope_bytes=1024 rope=${p.rope} rope_row_stride=128 rope_bytes=128 reserved_slot=-1`;
    expect(lines).toEqual([
      // n = 1000, 1152-byte rows: the specialized copy with 8 warps.
      `${args(p.stream!, 1000)} path=3 warps_per_block=8 rows_per_warp=1 flags=1`,
      // n = 3: the spread design, whose block its row sizes.
      `${args(0, 3)} path=4 warps_per_block=0 rows_per_warp=1 flags=1`,
      // A forced path takes the table's launch of that path, with the forced rows: vector 8 warps.
      `${args(0, 1000)} path=1 warps_per_block=8 rows_per_warp=4 flags=0`,
    ]);
  });

  it("passes quantizing writes across the FFI with their format, scale rule, page size, source dtype, element counts and scale", () => {
    const log = freshLog();
    const result = runInChild(`
      using flat = m.allocTensor("fp8_e5m2", [32, 576]);
      using sparse = m.allocTensor("u8", [2, 16, 656]);
      using v4 = m.allocTensor("u8", [2, 37440]);
      using indexer = m.allocTensor("u8", [2, 8448]);
      using nope = m.allocTensor("fp16", [5, 512]);
      using rope = m.allocTensor("fp16", [5, 64]);
      using nopeV4 = m.allocTensor("fp16", [5, 448]);
      using nopeIndexer = m.allocTensor("fp16", [5, 128]);
      using loc = m.fromHost(new Int32Array(5).fill(-1), "i32", [5]);
      m.setMlaKvBuffer(flat, loc, nope, rope, { scale: 0.1, reservedSlot: 7 });
      m.setMlaKvBuffer(sparse, loc, nope, rope, { format: "fp8_ds_mla", pdl: false });
      m.setMlaKvBuffer(sparse, loc, nope, rope, { format: "fp8_ds_mla", scaleRule: "amax" });
      m.setMlaKvBuffer(v4, loc, nopeV4, rope, { format: "fp8_ds_v4", pageSize: 64 });
      m.setMlaKvBuffer(indexer, loc, nopeIndexer, undefined, { format: "fp8_indexer", pageSize: 64, scaleRule: "ue8m0" });
      return { flat: flat.ptr, sparse: sparse.ptr, v4: v4.ptr, indexer: indexer.ptr, loc: loc.ptr, nope: nope.ptr, rope: rope.ptr, nopeV4: nopeV4.ptr, nopeIndexer: nopeIndexer.ptr };
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    const p = result.value as Record<string, number>;
    const lines = readFileSync(log, "utf8").trim().split("\n");
    const sources = (nope: number, nopeElems: number, rope: string) =>
      `loc=${p.loc} loc_elem_bytes=4 n=5 source_dtype=2 nope=${nope} nope_row_stride=${2 * nopeElems} nope_elems=${nopeElems} ${rope}`;
    const rope = `rope=${p.rope} rope_row_stride=128 rope_elems=64`;
    // Five rows: the vector path with 4 warps (spread and specialized only copy).
    const tail = (flags: number) => `path=1 warps_per_block=4 rows_per_warp=1 flags=${flags}`;
    expect(lines).toEqual([
      `quantized device=0 stream=0 format=2 scale_rule=0 cache=${p.flat} capacity=32 cache_row_stride=576 page_size=0 ${sources(p.nope!, 512, rope)} scale=0.100000001 reserved_slot=7 ${tail(1)}`,
      `quantized device=0 stream=0 format=3 scale_rule=1 cache=${p.sparse} capacity=32 cache_row_stride=656 page_size=0 ${sources(p.nope!, 512, rope)} scale=1 reserved_slot=-1 ${tail(0)}`,
      `quantized device=0 stream=0 format=3 scale_rule=2 cache=${p.sparse} capacity=32 cache_row_stride=656 page_size=0 ${sources(p.nope!, 512, rope)} scale=1 reserved_slot=-1 ${tail(1)}`,
      `quantized device=0 stream=0 format=4 scale_rule=1 cache=${p.v4} capacity=128 cache_row_stride=37440 page_size=64 ${sources(p.nopeV4!, 448, rope)} scale=1 reserved_slot=-1 ${tail(1)}`,
      `quantized device=0 stream=0 format=5 scale_rule=3 cache=${p.indexer} capacity=128 cache_row_stride=8448 page_size=64 ${sources(p.nopeIndexer!, 128, "rope=0 rope_row_stride=0 rope_elems=0")} scale=1 reserved_slot=-1 ${tail(1)}`,
    ]);
  });

  it("skips the reserved slot, given per call or as the default, and a call's null turns the default off", () => {
    const result = runInChild(`
      using kv = m.fromHost(new Uint8Array(4 * 3).fill(0xee), "u8", [4, 3]);
      using nope = m.fromHost(Uint8Array.from([1, 2, 3, 4, 5, 6]), "u8", [3, 2]);
      using rope = m.fromHost(Uint8Array.from([7, 8, 9]), "u8", [3, 1]);
      using loc = m.fromHost(new Int32Array([0, 2, 3]), "i32", [3]);
      m.setMlaKvBuffer(kv, loc, nope, rope, { reservedSlot: 2 });
      const perCall = [...kv.download()];
      kv.upload(new Uint8Array(12).fill(0xee));
      const previous = m.setWriteDefaults({ reservedSlot: 0 });
      m.setMlaKvBuffer(kv, loc, nope, rope);
      const byDefault = [...kv.download()];
      kv.upload(new Uint8Array(12).fill(0xee));
      m.setMlaKvBuffer(kv, loc, nope, rope, { reservedSlot: null });
      const overridden = [...kv.download()];
      m.setWriteDefaults(previous);
      return { perCall, byDefault, overridden, restored: m.writeDefaults().reservedSlot };
    `, env());
    expect(result.error, describeChild(result)).toBeUndefined();
    const E = 0xee;
    expect(result.value).toEqual({
      perCall: [1, 2, 7, E, E, E, E, E, E, 5, 6, 9],
      byDefault: [E, E, E, E, E, E, 3, 4, 8, 5, 6, 9],
      overridden: [1, 2, 7, E, E, E, 3, 4, 8, 5, 6, 9],
      restored: null,
    });
  });

  it("launches nothing for n = 0", () => {
    const log = freshLog();
    const result = runInChild(`
      using kv = m.allocTensor("bf16", [4, 576]);
      using nope = m.allocTensor("bf16", [1, 512]);
      using rope = m.allocTensor("bf16", [1, 64]);
      using loc = m.allocTensor("i32", [1]);
      m.setMlaKvBuffer(kv, loc.narrow(0, 0, 0), nope.narrow(0, 0, 0), rope.narrow(0, 0, 0));
      return require("node:fs").existsSync(${JSON.stringify(log)});
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(result.value).toBe(false);
  });

  it("takes TMA for a large batch of rows with no specialized kernels on sm_90, and the vector path before sm_90", () => {
    const body = `${tensors([64, 640], 2000, 512, 128)} m.setMlaKvBuffer(kv, loc, kNope, kRope);`;
    const hopper = freshLog();
    const ampere = freshLog();
    for (const [log, cc] of [[hopper, "9"], [ampere, "8"]] as const) {
      const result = runInChild(body, env({ HOST_MLA_KV_LOG: log, HOST_MLA_KV_CC_MAJOR: cc }));
      expect(result.error, describeChild(result)).toBeUndefined();
    }
    expect(loggedCalls(hopper).map(launchOf)).toEqual(["n=2000 path=2 warps=8 rows=1 flags=1"]);
    expect(loggedCalls(ampere).map(launchOf)).toEqual(["n=2000 path=1 warps=8 rows=2 flags=1"]);
  });

  it("writes a copy whose empty rope part is a view 2 bytes into its allocation, which takes no part in the alignment", () => {
    const result = runInChild(`
      using kv = m.fromHost(new Uint16Array(64 * 512).fill(0xbeef), "bf16", [64, 512]);
      using nope = m.fromHost(Uint16Array.from({ length: 3 * 512 }, (_, i) => (i * 40503 + 7) & 0xffff), "bf16", [3, 512]);
      using wide = m.allocTensor("bf16", [3, 5]);
      using loc = m.fromHost(new Int32Array([4, 9, 1]), "i32", [3]);
      m.setMlaKvBuffer(kv, loc, nope, wide.narrow(1, 1, 0));
      const got = kv.download(), sent = nope.download();
      return [4, 9, 1].every((slot, i) => got.subarray(slot * 512, slot * 512 + 512).every((v, j) => v === sent[i * 512 + j]));
    `, env());
    expect(result.value, describeChild(result)).toBe(true);
  });

  it("takes the vector path when the sources are not 16-byte aligned, which the specialized copy of 1152-byte rows needs", () => {
    const log = freshLog();
    const result = runInChild(`
      using kv = m.allocTensor("bf16", [64, 576]);
      using wide = m.allocTensor("bf16", [2000, 580]);
      using loc = m.fromHost(new Int32Array(2000).fill(-1), "i32", [2000]);
      m.setMlaKvBuffer(kv, loc, wide.narrow(1, 0, 512), wide.narrow(1, 512, 64));
      m.setMlaKvBuffer(kv, loc.narrow(0, 0, 5), wide.narrow(0, 0, 5).narrow(1, 0, 512), wide.narrow(0, 0, 5).narrow(1, 512, 64));
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(loggedCalls(log).map(launchOf)).toEqual(["n=2000 path=1 warps=8 rows=2 flags=1", "n=5 path=1 warps=4 rows=1 flags=1"]);
  });

  describe("a bf16 cache [64, 8200] written from kNope [1000, 8192] and kRope [1000, 8]", () => {
    // 16400-byte rows: TMA with 8 warps would stage 264192 bytes of shared memory, more than the
    // 232448 an H100 (and the host fixture, by default) lets a block have.
    const body = `
      const rows = 1000, slots = 64, nopeWidth = 8192, ropeWidth = 8, width = 8200;
      let x = 0x2545f491;
      const next = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
      const nope = Uint16Array.from({ length: rows * nopeWidth }, () => next() & 0xffff);
      const rope = Uint16Array.from({ length: rows * ropeWidth }, () => next() & 0xffff);
      const poison = Uint16Array.from({ length: slots * width }, () => next() & 0xffff);
      // 48 random rows go to 48 random distinct slots; the others are padding.
      const rowOrder = [...Array(rows).keys()], slotOrder = [...Array(slots).keys()];
      for (const order of [rowOrder, slotOrder]) for (let i = order.length - 1; i > 0; i--) { const j = next() % (i + 1); [order[i], order[j]] = [order[j], order[i]]; }
      const loc = new Int32Array(rows).fill(-1);
      for (let k = 0; k < 48; k++) loc[rowOrder[k]] = slotOrder[k];
      using kv = m.fromHost(poison, "bf16", [slots, width]);
      using kNope = m.fromHost(nope, "bf16", [rows, nopeWidth]);
      using kRope = m.fromHost(rope, "bf16", [rows, ropeWidth]);
      using l = m.fromHost(loc, "i32", [rows]);
      m.setMlaKvBuffer(kv, l, kNope, kRope);
      const got = kv.download();
      const want = poison.slice();
      for (let i = 0; i < rows; i++) {
        if (loc[i] < 0) continue;
        want.set(nope.subarray(i * nopeWidth, (i + 1) * nopeWidth), loc[i] * width);
        want.set(rope.subarray(i * ropeWidth, (i + 1) * ropeWidth), loc[i] * width + nopeWidth);
      }
      let mismatches = 0, first = -1, changed = 0;
      for (let j = 0; j < want.length; j++) {
        if (got[j] !== want[j]) { mismatches++; if (first < 0) first = j; }
        if (got[j] !== poison[j]) changed++;
      }
      return { mismatches, first, changedMost: changed > 0.99 * 48 * width };
    `;

    it("writes every byte as a plain copy would, with the vector path (8 warps x 2 rows), never TMA", () => {
      const log = freshLog();
      const result = runInChild(body, env({ HOST_MLA_KV_LOG: log }));
      expect(result.value, describeChild(result)).toEqual({ mismatches: 0, first: -1, changedMost: true });
      expect(loggedCalls(log).map(launchOf)).toEqual(["n=1000 path=1 warps=8 rows=2 flags=1"]);
    });

    it("takes TMA with 8 warps on a device with room for its stages, writing the same bytes", () => {
      const log = freshLog();
      const result = runInChild(body, env({ HOST_MLA_KV_LOG: log, HOST_MLA_KV_SMEM_OPTIN: "264192" }));
      expect(result.value, describeChild(result)).toEqual({ mismatches: 0, first: -1, changedMost: true });
      expect(loggedCalls(log).map(launchOf)).toEqual(["n=1000 path=2 warps=8 rows=1 flags=1"]);
    });

    it("refuses TMA forced with 8 warps, naming the shared memory it would need, and launches nothing", () => {
      const log = freshLog();
      const result = runInChild(`${tensors([64, 8200], 1000, 8192, 8)} m.setMlaKvBuffer(kv, loc, kNope, kRope, { path: "tma", warps: 8 });`, env({ HOST_MLA_KV_LOG: log }));
      expect(result.error, describeChild(result)).toEqual({
        name: "MlaKvError",
        code: "UNSUPPORTED",
        argument: "options.path",
        message:
          'options.path "tma": the TMA path would stage 264192 bytes of shared memory per block (8 warps x 2 rows of 16400 bytes); the device allows 232448 (device 0, Host Fixture GPU). Use path "auto".',
      });
      expect(loggedCalls(log)).toEqual([]);
    });
  });

  describe("with a forced path", () => {
    const forced = (setup: string, options: string, extra: Record<string, string> = {}) => {
      const log = freshLog();
      const result = runInChild(`${setup} m.setMlaKvBuffer(kv, loc, kNope, kRope, ${options});`, env({ HOST_MLA_KV_LOG: log, ...extra }));
      return { result, calls: loggedCalls(log).map(launchOf) };
    };
    /** What a forced call that should be refused threw, and how many writes it launched. */
    const refusal = ({ result, calls }: ReturnType<typeof forced>): Record<string, unknown> => ({ ...result.error, launched: calls.length, child: result.error ? "" : describeChild(result) });
    const refused = (argument: string, message: unknown, code = "UNSUPPORTED"): Record<string, unknown> => ({ name: "MlaKvError", code, argument, message, launched: 0, child: "" });
    const copy1152 = (n: number) => tensors([64, 576], n, 512, 64);
    const copy1280 = (n: number) => tensors([64, 640], n, 512, 128);

    it("refuses TMA on a GPU older than sm_90, naming the GPU, and launches nothing", () => {
      expect(refusal(forced(copy1152(2), `{ path: "tma" }`, { HOST_MLA_KV_CC_MAJOR: "8" }))).toEqual(
        refused("options.path", 'options.path "tma": the TMA path needs sm_90 or newer; this GPU is sm_8x (device 0, Host Fixture GPU). Use path "auto".'),
      );
    });

    it("refuses TMA for tensors that are not 16-byte aligned, saying how they are aligned", () => {
      expect(refusal(forced(tensors([64, 576], 2, 508, 4), `{ path: "tma" }`))).toEqual(
        refused(
          "options.path",
          'options.path "tma": the TMA path needs every address, row stride and row size to be multiples of 16 bytes; this write is aligned to 8 (device 0, Host Fixture GPU). Use path "auto".',
        ),
      );
    });

    it("refuses the specialized copy for a row size it has no kernels for", () => {
      expect(refusal(forced(copy1280(2), `{ path: "specialized" }`))).toEqual(
        refused("options.path", expect.stringMatching(/^options\.path "specialized": the specialized path has kernels for rows of .*; this row has 1280 \(device 0, Host Fixture GPU\)/)),
      );
    });

    it("refuses the spread design for a quantizing write", () => {
      expect(refusal(forced(tensors([64, 656], 2, 512, 64, "bf16", "u8"), `{ path: "spread", format: "fp8_ds_mla" }`))).toEqual(
        refused("options.path", expect.stringContaining('options.path "spread": the spread path copies rows; a fp8_ds_mla write converts them')),
      );
    });

    it("refuses warps for the spread design, whose row sizes its block", () => {
      expect(refusal(forced(copy1152(2), `{ path: "spread", warps: 4 }`))).toEqual(
        refused("options.warps", expect.stringContaining("the spread path sizes its blocks by the row; it takes no warps"), "INVALID_ARGUMENT"),
      );
    });

    it("runs the spread design with warps 0 and the rows per block asked for", () => {
      const { result, calls } = forced(copy1152(300), `{ path: "spread", rowsPerWarp: 2 }`);
      expect(result.error, describeChild(result)).toBeUndefined();
      expect(calls).toEqual(["n=300 path=4 warps=0 rows=2 flags=1"]);
    });

    it("takes the table's launch of that path, else 4 warps x 1 row, and lays forced options over it", () => {
      const vector = forced(copy1152(1000), `{ path: "vector" }`);
      const tma = forced(copy1152(3), `{ path: "tma" }`);
      const tmaWarps = forced(copy1152(3), `{ path: "tma", warps: 16, rowsPerWarp: 4 }`);
      for (const f of [vector, tma, tmaWarps]) expect(f.result.error, describeChild(f.result)).toBeUndefined();
      expect([...vector.calls, ...tma.calls, ...tmaWarps.calls]).toEqual([
        "n=1000 path=1 warps=8 rows=2 flags=1",
        "n=3 path=2 warps=4 rows=1 flags=1",
        "n=3 path=2 warps=16 rows=4 flags=1",
      ]);
    });

    it("takes a fully forced launch as given", () => {
      const result = runInChild(`
        const { chooseLaunchConfig } = await import(root + "/src/set_mla_kv_buffer.ts");
        const { planSetMlaKvBuffer } = await import(root + "/src/layout.ts");
        using kv = m.allocTensor("bf16", [64, 576]);
        using kNope = m.allocTensor("bf16", [4, 512]);
        using kRope = m.allocTensor("bf16", [4, 64]);
        using loc = m.allocTensor("i64", [4]);
        return chooseLaunchConfig(planSetMlaKvBuffer(kv, loc, kNope, kRope), { path: "vector", warps: 16, rowsPerWarp: 4 });
      `, env());
      expect(result.value, describeChild(result)).toEqual({ path: "vector", warps: 16, rowsPerWarp: 4 });
    });
  });

  describe("with a forced launch shape and the path left to dispatch", () => {
    it("takes the fastest path of the bucket that can take the warps asked for, the specialized copy in place of spread", () => {
      const log = freshLog();
      const result = runInChild(`${tensors([64, 576], 1000, 512, 64)}
        m.setMlaKvBuffer(kv, loc.narrow(0, 0, 3), kNope.narrow(0, 0, 3), kRope.narrow(0, 0, 3), { warps: 16 });
        m.setMlaKvBuffer(kv, loc, kNope, kRope, { warps: 2, rowsPerWarp: 4 });
        using wide = m.allocTensor("bf16", [64, 640]);
        using rope128 = m.allocTensor("bf16", [1000, 128]);
        m.setMlaKvBuffer(wide, loc, kNope, rope128, { warps: 16 });
      `, env({ HOST_MLA_KV_LOG: log }));
      expect(result.error, describeChild(result)).toBeUndefined();
      expect(loggedCalls(log).map(launchOf)).toEqual([
        "n=3 path=3 warps=16 rows=1 flags=1",
        "n=1000 path=3 warps=2 rows=4 flags=1",
        "n=1000 path=2 warps=16 rows=1 flags=1",
      ]);
    });

    it("keeps the spread design of a small batch when only the rows (a block) are forced, with warps 0", () => {
      const log = freshLog();
      const result = runInChild(`${tensors([64, 576], 3, 512, 64)}
        m.setMlaKvBuffer(kv, loc, kNope, kRope);
        m.setMlaKvBuffer(kv, loc, kNope, kRope, { rowsPerWarp: 2 });
      `, env({ HOST_MLA_KV_LOG: log }));
      expect(result.error, describeChild(result)).toBeUndefined();
      expect(loggedCalls(log).map(launchOf)).toEqual(["n=3 path=4 warps=0 rows=1 flags=1", "n=3 path=4 warps=0 rows=2 flags=1"]);
    });

    it("skips TMA with a warp count whose stages do not fit, for the next path of the bucket", () => {
      const log = freshLog();
      const result = runInChild(`${tensors([64, 8200], 1000, 8192, 8)}
        m.setMlaKvBuffer(kv, loc, kNope, kRope, { warps: 16 });
        m.setMlaKvBuffer(kv, loc, kNope, kRope, { warps: 4 });
      `, env({ HOST_MLA_KV_LOG: log }));
      expect(result.error, describeChild(result)).toBeUndefined();
      expect(loggedCalls(log).map(launchOf)).toEqual(["n=1000 path=1 warps=16 rows=2 flags=1", "n=1000 path=2 warps=4 rows=1 flags=1"]);
    });
  });

  it("refuses a destroyed stream with DISPOSED", () => {
    const result = runInChild(`
      const stream = m.Stream.create();
      stream.destroy();
      const [kv, loc, nope, rope] = [m.allocTensor("bf16", [64, 576]), m.allocTensor("i32", [2]), m.allocTensor("bf16", [2, 512]), m.allocTensor("bf16", [2, 64])];
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream });
    `, env());
    expect(result.error, describeChild(result)).toEqual({ name: "MlaKvError", code: "DISPOSED", message: "this Stream was destroyed", argument: "stream" });
  });

  it("refuses a GPU older than sm_75, which the library has no code for, naming it and launching nothing", () => {
    const log = freshLog();
    const result = runInChild(`
      using kv = m.allocTensor("bf16", [8, 576]);
      using nope = m.allocTensor("bf16", [2, 512]);
      using rope = m.allocTensor("bf16", [2, 64]);
      using loc = m.fromHost(new Int32Array([1, 2]), "i32", [2]);
      m.setMlaKvBuffer(kv, loc, nope, rope);
    `, env({ HOST_MLA_KV_CC_MAJOR: "7", HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toMatchObject({ code: "UNSUPPORTED", argument: "device" });
    expect(result.error!.message).toContain("is sm_70; mla-kv's library runs on sm_75 (Turing) and newer");
    expect(existsSync(log) ? readFileSync(log, "utf8") : "").toBe("");
  });

  it("reports rows whose loc is past the capacity when the stream is synchronised", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      using kv = m.allocTensor("u8", [4, 4]);
      using nope = m.allocTensor("u8", [20, 2]);
      using rope = m.allocTensor("u8", [20, 2]);
      using loc = m.fromHost(Int32Array.from({ length: 20 }, (_, i) => (i === 17 || i === 19 || i === 18 ? 4 + i : i % 4)), "i32", [20]);
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream });
      try { stream.synchronize(); } catch (e) { return { code: e.code, message: e.message, again: (stream.synchronize(), "clean") }; }
    `, env());
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(result.value).toEqual({
      code: "OUT_OF_RANGE_LOC",
      message: "setMlaKvBuffer skipped 3 row(s) whose loc was >= the cache capacity (first at row index 17) on a stream of device 0; those rows were not written",
      again: "clean",
    });
  });

  it("records the write into a graph during capture and runs it on each replay", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      using kv = m.allocTensor("u8", [4, 2]);
      using nope = m.fromHost(new Uint8Array([1]), "u8", [1, 1]);
      using rope = m.fromHost(new Uint8Array([2]), "u8", [1, 1]);
      using loc = m.fromHost(new Int32Array([1]), "i32", [1]);
      const graph = stream.capture(() => m.setMlaKvBuffer(kv, loc, nope, rope, { stream }));
      const afterCapture = [...kv.download()];
      loc.upload(new Int32Array([3]));
      graph.replay(stream);
      stream.synchronize();
      graph.destroy();
      return { afterCapture, afterReplay: [...kv.download()] };
    `, env());
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(result.value).toEqual({ afterCapture: [0, 0, 0, 0, 0, 0, 0, 0], afterReplay: [0, 0, 0, 0, 0, 0, 1, 2] });
  });
});
