import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinTable, type DispatchTable } from "../../src/dispatch.ts";
import { BUILTIN_TABLES, clearTables, setDispatchTableSource, tableFor, type DispatchTableSource } from "../../src/dispatch_tables.ts";
import { copyLayout, type WriteLayout } from "../../src/layout_key.ts";
import type { Stream } from "../../src/stream.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

const vectorOnly = (warps: 1 | 2 | 4 | 8 | 16): DispatchTable => [[{ path: "vector", warps, rowsPerWarp: 1 }]];

/** A source that hands out a fresh table per ask and records who asked. */
function recording(final: boolean) {
  const asked: Array<{ device: number; layout: WriteLayout; stream: Stream | undefined }> = [];
  const source: DispatchTableSource = {
    tableFor(device, layout, stream) {
      asked.push({ device, layout, stream });
      return { table: vectorOnly(([1, 2, 4, 8, 16] as const)[asked.length % 5]!), final };
    },
  };
  return { source, asked };
}

describe("tableFor", () => {
  // Whatever source another suite of this process installed is put back after each test.
  let installed: DispatchTableSource;
  beforeEach(() => {
    installed = setDispatchTableSource(BUILTIN_TABLES);
  });
  afterEach(() => {
    setDispatchTableSource(installed);
  });

  it("serves the built-in rule while no tuner is installed", () => {
    expect(tableFor(0, copyLayout(1024, 128, 8), undefined)).toEqual(builtinTable());
  });

  it("asks the source once per device and layout for a final table, then answers from memory", () => {
    const { source, asked } = recording(true);
    setDispatchTableSource(source);
    const a = tableFor(0, copyLayout(1024, 128, 8), undefined);
    expect(tableFor(0, copyLayout(1024, 128, 8), undefined)).toBe(a);
    const otherLayout = tableFor(0, copyLayout(1024, 128, 4), undefined);
    const otherDevice = tableFor(1, copyLayout(1024, 128, 8), undefined);
    expect(otherLayout).not.toBe(a);
    expect(otherDevice).not.toBe(a);
    expect(asked.map((q) => [q.device, q.layout.locBytes])).toEqual([[0, 8], [0, 4], [1, 8]]);
  });

  it("keys tables by the layout's name, so an equal layout built anew finds the same table", () => {
    const { source, asked } = recording(true);
    setDispatchTableSource(source);
    const a = tableFor(0, copyLayout(1024, 128, 8), undefined);
    expect(tableFor(0, { ...copyLayout(1024, 128, 8) }, undefined)).toBe(a);
    expect(asked).toHaveLength(1);
  });

  it("asks again at every call while the source says its table is not final (a capture without a profile)", () => {
    const { source, asked } = recording(false);
    setDispatchTableSource(source);
    tableFor(0, copyLayout(1024, 128, 8), undefined);
    tableFor(0, copyLayout(1024, 128, 8), undefined);
    expect(asked).toHaveLength(2);
  });

  it("passes the stream of the write on to the source", () => {
    const { source, asked } = recording(true);
    setDispatchTableSource(source);
    const stream = { marker: "the write's stream" } as unknown as Stream;
    tableFor(0, copyLayout(1024, 128, 8), stream);
    expect(asked[0]!.stream).toBe(stream);
  });

  it("forgets the tables handed out when another source is installed, and returns the one it replaces", () => {
    const first = recording(true);
    setDispatchTableSource(first.source);
    tableFor(0, copyLayout(1024, 128, 8), undefined);
    const second = recording(true);
    expect(setDispatchTableSource(second.source)).toBe(first.source);
    tableFor(0, copyLayout(1024, 128, 8), undefined);
    expect([first.asked.length, second.asked.length]).toEqual([1, 1]);
  });

  it("asks anew after clearTables", () => {
    const { source, asked } = recording(true);
    setDispatchTableSource(source);
    const a = tableFor(0, copyLayout(1024, 128, 8), undefined);
    clearTables();
    expect(tableFor(0, copyLayout(1024, 128, 8), undefined)).not.toBe(a);
    expect(asked).toHaveLength(2);
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`tables of mod.ts against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  // A body must name m: Bun drops an import whose bindings go unused, and mod.ts, which installs
  // the tuner's table source, would then never load.
  const noTuning = () => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", MLA_KV_CACHE_DIR: mkdtempSync(join(tmpdir(), "mla-kv-tables-")) });

  it("has mod.ts install the tuner's first-use source in place of the built-in one", () => {
    const result = runInChild(`
      const { BUILTIN_TABLES, setDispatchTableSource } = await import(root + "/src/dispatch_tables.ts");
      const { FIRST_USE_TABLES } = await import(root + "/autotune/first_use.ts");
      const installed = setDispatchTableSource(BUILTIN_TABLES);
      return { loaded: typeof m.setMlaKvBuffer, firstUse: installed === FIRST_USE_TABLES };
    `, noTuning());
    expect(result.value, describeChild(result)).toEqual({ loaded: "function", firstUse: true });
  });

  it("serves the built-in rule when no profile exists and autotuning is off, cached per device and layout", () => {
    const result = runInChild(`
      const { tableFor } = await import(root + "/src/dispatch_tables.ts");
      const { builtinTable } = await import(root + "/src/dispatch.ts");
      const { copyLayout } = await import(root + "/src/layout_key.ts");
      const a = tableFor(0, copyLayout(1024, 128, 8), m.Stream.default(0));
      return { cached: a === tableFor(0, copyLayout(1024, 128, 8)), perLayout: a !== tableFor(0, copyLayout(512, 144, 4)), builtin: JSON.stringify(a) === JSON.stringify(builtinTable()) };
    `, noTuning());
    expect(result.value, describeChild(result)).toEqual({ cached: true, perLayout: true, builtin: true });
  });

  it("serves the ranked launches of a stored profile for this GPU instead of the built-in rule", () => {
    const result = runInChild(`
      const { tableFor } = await import(root + "/src/dispatch_tables.ts");
      const { copyLayout } = await import(root + "/src/layout_key.ts");
      const { storeProfile } = await import(root + "/tests/autotune/fixtures/stored_profile.ts");
      const launch = (path, warps, us) => ({ path, warps, rowsPerWarp: 2, us });
      const buckets = Array.from({ length: 12 }, (_, b) => ({
        bucket: b, n: 2 ** b,
        ranked: b < 9 ? [launch("spread", 0, 1), launch("vector", 2, 2)] : [launch("tma", 16, 1), launch("specialized", 8, 1.5), launch("vector", 16, 2)],
      }));
      const layout = { tunedAt: new Date().toISOString(), tuneMs: 1, method: "search", pdl: true, buckets };
      storeProfile(m.deviceInfo(0).index, { "1024+128/i64": layout });
      const t = tableFor(0, copyLayout(1024, 128, 8));
      return [t[0], t[11], t[16]];
    `, noTuning());
    const spreadFirst = [{ path: "spread", warps: 0, rowsPerWarp: 2 }, { path: "vector", warps: 2, rowsPerWarp: 2 }];
    const tmaFirst = [{ path: "tma", warps: 16, rowsPerWarp: 2 }, { path: "specialized", warps: 8, rowsPerWarp: 2 }, { path: "vector", warps: 16, rowsPerWarp: 2 }];
    expect(result.value, describeChild(result)).toEqual([spreadFirst, tmaFirst, tmaFirst]);
  });
});
