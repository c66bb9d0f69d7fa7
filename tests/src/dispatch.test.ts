import { describe, expect, it } from "bun:test";
import { BUILTIN_LARGE_BATCH_N, BUILTIN_SPREAD_MAX_N, builtinTable, choose, entryFor, type DispatchTable } from "../../src/dispatch.ts";
import { pathMayRun, type DeviceFacts, type WriteGeometry } from "../../src/eligibility.ts";
import { BUCKET_COUNT, LAST_BUCKET, bucketN, type LaunchConfig } from "../../src/vocabulary.ts";

const HOPPER: DeviceFacts = { ccMajor: 9, smemPerBlockOptin: 232448 };
const AMPERE: DeviceFacts = { ccMajor: 8, smemPerBlockOptin: 166912 };
const copy = (rowBytes: number, alignment: WriteGeometry["alignment"] = 16): WriteGeometry => ({ format: "copy", rowBytes, alignment });

/** What dispatch takes for a write of `geometry` on `device`, from the built-in rule. */
const builtin = (n: number, device: DeviceFacts, geometry: WriteGeometry) => choose(builtinTable(), n, (c) => pathMayRun(c, device, geometry));

describe("builtinTable", () => {
  const table = builtinTable();

  it("has one entry per bucket, each ending with a vector launch", () => {
    expect(table).toHaveLength(BUCKET_COUNT);
    for (const entry of table) expect(entry.at(-1)!.path).toBe("vector");
  });

  it("tries spread, then specialized with 4 warps, then vector with 4 warps up to n = 32", () => {
    expect(BUILTIN_SPREAD_MAX_N).toBe(32);
    for (const n of [1, 2, 17, 32]) {
      expect(entryFor(table, n)).toEqual([
        { path: "spread", warps: 0, rowsPerWarp: 1 },
        { path: "specialized", warps: 4, rowsPerWarp: 1 },
        { path: "vector", warps: 4, rowsPerWarp: 1 },
      ]);
    }
  });

  it("tries specialized, then vector, with 4 warps from n = 33 to 512", () => {
    expect(BUILTIN_LARGE_BATCH_N).toBe(512);
    for (const n of [33, 64, 300, 512]) {
      expect(entryFor(table, n)).toEqual([
        { path: "specialized", warps: 4, rowsPerWarp: 1 },
        { path: "vector", warps: 4, rowsPerWarp: 1 },
      ]);
    }
  });

  it("tries specialized and TMA with 8 warps, then vector with 8 warps x 2 rows, from n = 513 on", () => {
    for (const n of [513, 1024, 65536, 10_000_000]) {
      expect(entryFor(table, n)).toEqual([
        { path: "specialized", warps: 8, rowsPerWarp: 1 },
        { path: "tma", warps: 8, rowsPerWarp: 1 },
        { path: "vector", warps: 8, rowsPerWarp: 2 },
      ]);
    }
  });

  it("is frozen, entries and launches too, so no caller can change what others dispatch on", () => {
    expect(Object.isFrozen(table)).toBe(true);
    for (const entry of table) {
      expect(Object.isFrozen(entry)).toBe(true);
      for (const c of entry) expect(Object.isFrozen(c)).toBe(true);
    }
  });

  it("gives every launch a shape the path takes: spread warps 0, the others 1-16", () => {
    for (const entry of table) for (const c of entry) expect(c.path === "spread" ? c.warps === 0 : c.warps > 0).toBe(true);
  });
});

describe("the built-in rule through the eligibility predicate", () => {
  it("takes spread for a small batch of 1152-byte rows, the specialized copy for larger ones", () => {
    expect(builtin(1, HOPPER, copy(1152))).toEqual({ path: "spread", warps: 0, rowsPerWarp: 1 });
    expect(builtin(200, HOPPER, copy(1152))).toEqual({ path: "specialized", warps: 4, rowsPerWarp: 1 });
    expect(builtin(4096, AMPERE, copy(1152))).toEqual({ path: "specialized", warps: 8, rowsPerWarp: 1 });
  });

  it("takes TMA for a large batch of rows with no specialized kernels on sm_90, vector before it", () => {
    expect(builtin(4096, HOPPER, copy(1280))).toEqual({ path: "tma", warps: 8, rowsPerWarp: 1 });
    expect(builtin(4096, AMPERE, copy(1280))).toEqual({ path: "vector", warps: 8, rowsPerWarp: 2 });
    expect(builtin(8, HOPPER, copy(1280))).toEqual({ path: "vector", warps: 4, rowsPerWarp: 1 });
  });

  it("falls back to vector for a misaligned call, 8 warps x 2 rows for a large batch", () => {
    expect(builtin(4096, HOPPER, copy(1152, 8))).toEqual({ path: "vector", warps: 8, rowsPerWarp: 2 });
    expect(builtin(3, HOPPER, copy(1152, 4))).toEqual({ path: "vector", warps: 4, rowsPerWarp: 1 });
  });

  it("never takes TMA with 8 warps for 16400-byte rows, whose stages need 264192 bytes of the 232448 an H100 has", () => {
    for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
      expect(builtin(bucketN(bucket), HOPPER, copy(16400)).path).toBe("vector");
    }
    expect(builtin(1000, HOPPER, copy(16400))).toEqual({ path: "vector", warps: 8, rowsPerWarp: 2 });
    // With room for the stages, the same write takes TMA.
    expect(builtin(1000, { ccMajor: 9, smemPerBlockOptin: 264192 }, copy(16400))).toEqual({ path: "tma", warps: 8, rowsPerWarp: 1 });
  });

  it("takes the vector path for a quantizing write until TMA can run it, and always for a paged one", () => {
    const dsMla: WriteGeometry = { format: "fp8_ds_mla", rowBytes: 656, alignment: 16 };
    expect(builtin(8, HOPPER, dsMla).path).toBe("vector");
    expect(builtin(4096, HOPPER, dsMla).path).toBe("tma");
    for (const n of [1, 100, 4096]) expect(builtin(n, HOPPER, { format: "fp8_ds_v4", rowBytes: 576, alignment: 16 }).path).toBe("vector");
  });
});

describe("choose", () => {
  const at = (path: LaunchConfig["path"], warps: LaunchConfig["warps"], rowsPerWarp: LaunchConfig["rowsPerWarp"] = 1): LaunchConfig => ({ path, warps, rowsPerWarp });
  const marked: DispatchTable = Array.from({ length: BUCKET_COUNT }, (_, bucket) => [
    at("tma", 16, ([1, 2, 4] as const)[bucket % 3]!),
    at("specialized", 2),
    at("vector", 1, 4),
  ]);

  it("takes the bucket's first launch that may run", () => {
    expect(choose(marked, 3, () => true)).toBe(marked[2]![0]!);
    expect(choose(marked, 3, (c) => c.path !== "tma")).toBe(marked[2]![1]!);
  });

  it("takes the last launch, the vector one, when nothing before it may run, without asking about it", () => {
    const asked: LaunchConfig[] = [];
    expect(choose(marked, 3, (c) => (asked.push(c), false))).toBe(marked[2]![2]!);
    expect(asked).toEqual([marked[2]![0]!, marked[2]![1]!]);
  });

  it("asks about the launches in their ranked order and stops at the first that may run", () => {
    const asked: string[] = [];
    choose(marked, 100, (c) => (asked.push(c.path), c.path === "specialized"));
    expect(asked).toEqual(["tma", "specialized"]);
  });

  it("answers n = 0 from the first bucket", () => {
    expect(choose(marked, 0, () => true)).toBe(marked[0]![0]!);
  });

  it("serves every n past the last bucket from the last entry", () => {
    expect(entryFor(marked, 2 ** 30)).toBe(marked[LAST_BUCKET]!);
  });

  it("uses the last entry of a shorter table for larger buckets", () => {
    const short = marked.slice(0, 4);
    expect(entryFor(short, 1_000_000)).toBe(short[3]!);
    expect(choose(short, 1_000_000, () => true)).toBe(short[3]![0]!);
  });

  it("takes a lone vector launch whatever the predicate says", () => {
    const lone: DispatchTable = [[at("vector", 8, 2)]];
    expect(choose(lone, 5, () => false)).toEqual(at("vector", 8, 2));
  });
});
