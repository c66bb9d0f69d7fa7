import { afterAll, describe, expect, it } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceTensor } from "../../src/tensor.ts";
import { chooseLaunchConfig, setMlaKvBuffer, validateSetMlaKvBufferOptions } from "../../src/set_mla_kv_buffer.ts";
import { planSetMlaKvBuffer } from "../../src/layout.ts";
import { Stream } from "../../src/stream.ts";
import { fake } from "../helpers/fake_tensors.ts";
import { hostLibrary, hostLibraryFailure } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { thrown } from "../helpers/thrown.ts";

function write(n = 2) {
  return [fake("bf16", [64, 576]), fake("i64", [n]), fake("bf16", [n, 512]), fake("bf16", [n, 64])] as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];
}

describe("setMlaKvBuffer options", () => {
  const bad: Array<[string, unknown, string, string]> = [
    ["refuses an unknown option, naming it", { rowPerWarp: 2 }, "options.rowPerWarp", "unknown option; the options are stream, path, warps, rowsPerWarp, device, pdl, reservedSlot, format, scale"],
    ["refuses a path other than auto, vector and tma", { path: "fast" }, "options.path", 'expected "auto", "vector" or "tma", got "fast"'],
    ["refuses 3 warps", { warps: 3 }, "options.warps", "expected 1, 2, 4, 8 or 16, got 3"],
    ["refuses a pdl option that is not a boolean", { pdl: 1 }, "options.pdl", "expected true or false, got 1"],
    ["refuses 32 warps", { warps: 32 }, "options.warps", "got 32"],
    ["refuses warps given as a string", { warps: "8" }, "options.warps", 'got "8"'],
    ["refuses 8 rows per warp", { rowsPerWarp: 8 }, "options.rowsPerWarp", "expected 1, 2 or 4, got 8"],
    ["refuses a stream that is not a Stream", { stream: 0 }, "options.stream", "expected a Stream, got 0"],
    ["refuses a negative device", { device: -1 }, "options.device", "expected a device index"],
    ["refuses options that are not an object", "fast", "options", 'expected a plain options object ({ … }), got "fast"'],
    ["refuses options given as a Map instead of reading them as none", new Map([["path", "tma"]]), "options", "got a Map"],
    ["refuses options given as a class instance", new (class WriteOptions { path = "tma"; })(), "options", "got a WriteOptions"],
    ["refuses options given as null", null, "options", "got null"],
    ["refuses a negative reserved slot", { reservedSlot: -1 }, "options.reservedSlot", "expected a slot index (an integer >= 0) or null for none, got -1"],
    ["refuses a fractional reserved slot", { reservedSlot: 1.5 }, "options.reservedSlot", "got 1.5"],
    ["refuses an unknown format", { format: "fp4" }, "options.format", 'expected "copy", "fp8" or "fp8_ds_mla", got "fp4"'],
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

  it("refuses a scale for the ds_mla format, whose scales are per tile", () => {
    const [, loc, kNope, kRope] = write(2);
    const error = thrown(() => setMlaKvBuffer(fake("u8", [64, 656]), loc, kNope, kRope, { format: "fp8_ds_mla", scale: 2 }));
    expect(error.argument).toBe("options.scale");
    expect(error.message).toContain("computes a scale per 128-element tile");
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
    expect(() => validateSetMlaKvBufferOptions({ stream: undefined, path: undefined, warps: undefined })).not.toThrow();
  });

  it("refuses a stream of another device than the tensors", () => {
    const error = thrown(() => setMlaKvBuffer(...write(), { stream: Stream.default(1) }));
    expect(error.argument).toBe("options.stream");
    expect(error.message).toContain("expected a stream on device 0, got one on device 1");
  });

  it("refuses a forced TMA path for tensors that are not 16-byte aligned, listing what is not", () => {
    const [kvBuffer, loc] = write(2);
    const error = thrown(() => setMlaKvBuffer(kvBuffer, loc, fake("bf16", [2, 508]), fake("bf16", [2, 4]), { path: "tma" }));
    expect(error.code).toBe("UNSUPPORTED");
    expect(error.argument).toBe("options.path");
    expect(error.message).toContain("not aligned: nopeRowStrideBytes = 1016, nopeBytes = 1016, ropeRowStrideBytes = 8, ropeBytes = 8");
  });

  it("validates the tensors even when there is nothing to write", () => {
    const [kvBuffer, loc, kNope] = write(0);
    expect(thrown(() => setMlaKvBuffer(kvBuffer, loc, kNope, fake("fp16", [0, 64]))).argument).toBe("kRope");
  });
});

describe("chooseLaunchConfig", () => {
  it("takes a fully forced configuration as given, without consulting the GPU", () => {
    const plan = planSetMlaKvBuffer(...write(4));
    expect(chooseLaunchConfig(plan, { path: "vector", warps: 16, rowsPerWarp: 4 })).toEqual({ path: "vector", warps: 16, rowsPerWarp: 4 });
  });
});

// Everything below crosses the real FFI into a CPU implementation of mla_kv.h, in a child process
// (the library is chosen once per process).
const host = hostLibrary();
const logs = mkdtempSync(join(tmpdir(), "mla-kv-log-"));
afterAll(() => rmSync(logs, { recursive: true, force: true }));
let logCount = 0;
const freshLog = () => join(logs, `calls-${logCount++}.log`);
const hostReason = host ? "" : ` (skipped: the C fixture did not build: ${hostLibraryFailure().split("\n")[0]})`;

describe.skipIf(!host)(`setMlaKvBuffer against the host implementation of the ABI${hostReason}`, () => {
  // The built-in rule, not a tune: the host implementation has no GPU to time.
  const env = (extra: Record<string, string> = {}) => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", ...extra });

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
    expect(lines).toEqual([
      `device=0 stream=${p.stream} cache=${p.kv} capacity=64 cache_row_stride=1152 loc=${p.loc} loc_elem_bytes=8 n=1000 nope=${p.nope} nope_row_stride=1024 nope_bytes=1024 rope=${p.rope} rope_row_stride=128 rope_bytes=128 reserved_slot=-1 path=2 warps_per_block=8 rows_per_warp=1 flags=1`,
      `device=0 stream=0 cache=${p.kv} capacity=64 cache_row_stride=1152 loc=${p.loc} loc_elem_bytes=8 n=3 nope=${p.nope} nope_row_stride=1024 nope_bytes=1024 rope=${p.rope} rope_row_stride=128 rope_bytes=128 reserved_slot=-1 path=1 warps_per_block=4 rows_per_warp=1 flags=1`,
      `device=0 stream=0 cache=${p.kv} capacity=64 cache_row_stride=1152 loc=${p.loc} loc_elem_bytes=8 n=1000 nope=${p.nope} nope_row_stride=1024 nope_bytes=1024 rope=${p.rope} rope_row_stride=128 rope_bytes=128 reserved_slot=-1 path=1 warps_per_block=8 rows_per_warp=4 flags=0`,
    ]);
  });

  it("passes quantizing writes across the FFI with their format, source dtype, element counts and scale", () => {
    const log = freshLog();
    const result = runInChild(`
      using flat = m.allocTensor("fp8_e5m2", [32, 576]);
      using sparse = m.allocTensor("u8", [2, 16, 656]);
      using nope = m.allocTensor("fp16", [5, 512]);
      using rope = m.allocTensor("fp16", [5, 64]);
      using loc = m.fromHost(new Int32Array(5).fill(-1), "i32", [5]);
      m.setMlaKvBuffer(flat, loc, nope, rope, { scale: 0.1, reservedSlot: 7 });
      m.setMlaKvBuffer(sparse, loc, nope, rope, { format: "fp8_ds_mla", pdl: false });
      return { flat: flat.ptr, sparse: sparse.ptr, loc: loc.ptr, nope: nope.ptr, rope: rope.ptr };
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    const p = result.value as Record<string, number>;
    const lines = readFileSync(log, "utf8").trim().split("\n");
    const common = `loc=${p.loc} loc_elem_bytes=4 n=5 source_dtype=2 nope=${p.nope} nope_row_stride=1024 nope_elems=512 rope=${p.rope} rope_row_stride=128 rope_elems=64`;
    expect(lines).toEqual([
      `quantized device=0 stream=0 format=2 scale_rule=0 cache=${p.flat} capacity=32 cache_row_stride=576 page_size=0 ${common} scale=0.100000001 reserved_slot=7 path=1 warps_per_block=4 rows_per_warp=1 flags=1`,
      `quantized device=0 stream=0 format=3 scale_rule=0 cache=${p.sparse} capacity=32 cache_row_stride=656 page_size=0 ${common} scale=1 reserved_slot=-1 path=1 warps_per_block=4 rows_per_warp=1 flags=0`,
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

  it("chooses the vector path on a GPU without TMA", () => {
    const log = freshLog();
    const result = runInChild(`
      using kv = m.allocTensor("bf16", [64, 576]);
      using nope = m.allocTensor("bf16", [2000, 512]);
      using rope = m.allocTensor("bf16", [2000, 64]);
      using loc = m.fromHost(new Int32Array(2000).fill(-1), "i32", [2000]);
      m.setMlaKvBuffer(kv, loc, nope, rope);
    `, env({ HOST_MLA_KV_LOG: log, HOST_MLA_KV_CC_MAJOR: "8" }));
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(readFileSync(log, "utf8")).toContain("path=1 warps_per_block=8 rows_per_warp=2");
  });

  it("chooses the vector path when the sources are not 16-byte aligned", () => {
    const log = freshLog();
    const result = runInChild(`
      using kv = m.allocTensor("bf16", [64, 576]);
      using wide = m.allocTensor("bf16", [2000, 580]);
      using loc = m.fromHost(new Int32Array(2000).fill(-1), "i32", [2000]);
      m.setMlaKvBuffer(kv, loc, wide.narrow(1, 0, 512), wide.narrow(1, 512, 64));
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    expect(readFileSync(log, "utf8")).toContain("path=1 warps_per_block=8 rows_per_warp=2");
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

  it("refuses a forced TMA path on a GPU older than sm_90, naming the GPU", () => {
    const result = runInChild(`
      const [kv, loc, nope, rope] = [m.allocTensor("bf16", [64, 576]), m.allocTensor("i32", [2]), m.allocTensor("bf16", [2, 512]), m.allocTensor("bf16", [2, 64])];
      m.setMlaKvBuffer(kv, loc, nope, rope, { path: "tma" });
    `, env({ HOST_MLA_KV_CC_MAJOR: "8" }));
    expect(result.error?.code, describeChild(result)).toBe("UNSUPPORTED");
    expect(result.error?.message).toBe('options.path "tma" needs an sm_90 or newer GPU; device 0 (Host Fixture GPU) is sm_80. Use path "auto" or "vector".');
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
