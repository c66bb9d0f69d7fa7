/**
 * launchWrite is the one caller of the C writes; these run it across the real FFI into the host
 * fixture, which logs every call's arguments (HOST_MLA_KV_LOG) and runs the library's own checks.
 */
import { describe, expect, it } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const host = hostLibrary();
const freshDir = tempDirs("mla-kv-launch-");
const freshLog = () => join(freshDir(), "calls.log");
const lines = (log: string) => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []);
/** The part of a logged line from `from` on. */
const tail = (line: string, from: string) => line.slice(line.indexOf(from));

// Each body plans a write with planSetMlaKvBuffer and hands the plan to launchWrite.
const prelude = `
  const { launchWrite } = await import(root + "/src/launch.ts");
  const { planSetMlaKvBuffer } = await import(root + "/src/layout.ts");
`;

describe.skipIf(!host)(`launchWrite against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const env = (extra: Record<string, string> = {}) => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", ...extra });

  it("passes each path's code, the launch shape, the PDL flag and the reserved slot to the copy", () => {
    const log = freshLog();
    const result = runInChild(`${prelude}
      using kv = m.allocTensor("bf16", [64, 576]);
      using nope = m.allocTensor("bf16", [4, 512]);
      using rope = m.allocTensor("bf16", [4, 64]);
      using loc = m.fromHost(new Int32Array(4).fill(-1), "i32", [4]);
      using stream = m.Stream.create();
      const plan = planSetMlaKvBuffer(kv, loc, nope, rope);
      const extras = { stream: stream.handle, pdl: true, reservedSlot: 5, scale: 1 };
      launchWrite(plan, { path: "vector", warps: 2, rowsPerWarp: 4 }, extras);
      launchWrite(plan, { path: "tma", warps: 16, rowsPerWarp: 1 }, { ...extras, pdl: false });
      launchWrite(plan, { path: "specialized", warps: 8, rowsPerWarp: 2 }, { ...extras, reservedSlot: -1 });
      launchWrite(plan, { path: "spread", warps: 0, rowsPerWarp: 4 }, { ...extras, stream: 0 });
      return stream.handle;
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    const got = lines(log);
    expect(got.map((l) => tail(l, "reserved_slot="))).toEqual([
      "reserved_slot=5 path=1 warps_per_block=2 rows_per_warp=4 flags=1",
      "reserved_slot=5 path=2 warps_per_block=16 rows_per_warp=1 flags=0",
      "reserved_slot=-1 path=3 warps_per_block=8 rows_per_warp=2 flags=1",
      "reserved_slot=5 path=4 warps_per_block=0 rows_per_warp=4 flags=1",
    ]);
    expect(got.map((l) => l.split(" ")[1])).toEqual([...Array(3).fill(`stream=${result.value}`), "stream=0"]);
    for (const l of got) expect(l).toContain("capacity=64 cache_row_stride=1152 ");
  });

  it("passes a quantizing write's format, scale rule, page size, source dtype and scale", () => {
    const log = freshLog();
    const result = runInChild(`${prelude}
      using loc = m.fromHost(new Int32Array(2).fill(-1), "i32", [2]);
      using flat = m.allocTensor("fp8_e4m3", [8, 576]);
      using v4 = m.allocTensor("u8", [1, 37440]);
      using indexer = m.allocTensor("u8", [1, 8448]);
      using nope = m.allocTensor("bf16", [2, 512]);
      using rope = m.allocTensor("bf16", [2, 64]);
      using nopeV4 = m.allocTensor("bf16", [2, 448]);
      using nopeIndexer = m.allocTensor("fp16", [2, 128]);
      const extras = { stream: 0, pdl: true, reservedSlot: -1, scale: 0.5 };
      launchWrite(planSetMlaKvBuffer(flat, loc, nope, rope), { path: "tma", warps: 4, rowsPerWarp: 1 }, extras);
      launchWrite(planSetMlaKvBuffer(v4, loc, nopeV4, rope, { format: "fp8_ds_v4", pageSize: 64 }), { path: "vector", warps: 4, rowsPerWarp: 2 }, { ...extras, scale: 1 });
      launchWrite(planSetMlaKvBuffer(indexer, loc, nopeIndexer, undefined, { format: "fp8_indexer", pageSize: 64, scaleRule: "ue8m0" }), { path: "vector", warps: 1, rowsPerWarp: 1 }, { ...extras, pdl: false, scale: 1 });
    `, env({ HOST_MLA_KV_LOG: log }));
    expect(result.error, describeChild(result)).toBeUndefined();
    const got = lines(log);
    expect(got.map((l) => tail(l, "format="))[0]).toMatch(/^format=1 scale_rule=0 cache=\d+ capacity=8 cache_row_stride=576 page_size=0 /);
    expect(got[0]).toContain("source_dtype=1 ");
    expect(got[0]).toContain("scale=0.5 reserved_slot=-1 path=2 warps_per_block=4 rows_per_warp=1 flags=1");
    expect(got[1]).toMatch(/format=4 scale_rule=1 cache=\d+ capacity=64 cache_row_stride=37440 page_size=64 /);
    expect(got[1]).toContain("nope_elems=448 ");
    expect(got[1]).toContain("path=1 warps_per_block=4 rows_per_warp=2 flags=1");
    expect(got[2]).toMatch(/format=5 scale_rule=3 cache=\d+ capacity=64 cache_row_stride=8448 page_size=64 /);
    expect(got[2]).toContain("source_dtype=2 ");
    expect(got[2]).toContain("rope=0 rope_row_stride=0 rope_elems=0 scale=1 reserved_slot=-1 path=1 warps_per_block=1 rows_per_warp=1 flags=0");
  });

  it("writes the rows of the plan it is given", () => {
    const result = runInChild(`${prelude}
      using kv = m.fromHost(new Uint8Array(4 * 5).fill(0xee), "u8", [4, 5]);
      using nope = m.fromHost(Uint8Array.from([11, 12, 13, 21, 22, 23]), "u8", [2, 3]);
      using rope = m.fromHost(Uint8Array.from([14, 15, 24, 25]), "u8", [2, 2]);
      using loc = m.fromHost(new Int32Array([2, 0]), "i32", [2]);
      launchWrite(planSetMlaKvBuffer(kv, loc, nope, rope), { path: "vector", warps: 4, rowsPerWarp: 1 }, { stream: 0, pdl: false, reservedSlot: -1, scale: 1 });
      return [...kv.download()];
    `, env());
    const E = 0xee;
    expect(result.value, describeChild(result)).toEqual([21, 22, 23, 24, 25, E, E, E, E, E, 11, 12, 13, 14, 15, E, E, E, E, E]);
  });

  it("turns the library's refusal of a path into UNSUPPORTED with the library's reason", () => {
    const result = runInChild(`${prelude}
      using kv = m.allocTensor("bf16", [8, 576]);
      using nope = m.allocTensor("bf16", [2, 512]);
      using rope = m.allocTensor("bf16", [2, 64]);
      using loc = m.allocTensor("i32", [2]);
      launchWrite(planSetMlaKvBuffer(kv, loc, nope, rope), { path: "tma", warps: 8, rowsPerWarp: 1 }, { stream: 0, pdl: true, reservedSlot: -1, scale: 1 });
    `, env({ HOST_MLA_KV_CC_MAJOR: "8" }));
    expect(result.error, describeChild(result)).toMatchObject({ name: "MlaKvError", code: "UNSUPPORTED" });
    expect(result.error!.message).toContain("MLA_KV_PATH_TMA needs sm_90 or newer; this device is sm_80");
  });
});
