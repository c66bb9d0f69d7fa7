import { describe, expect, it } from "bun:test";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableFromLayoutProfile, tunedLine } from "../../autotune/first_use.ts";
import type { LayoutProfile } from "../../autotune/profile.ts";
import { BUCKET_COUNT, dispatch } from "../../src/dispatch.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { TWO_ROW_WRITE } from "../helpers/two_row_write.ts";

const choice = (path: "vector" | "tma", warps: 1 | 2 | 4 | 8 | 16, us: number) => ({ path, warps, rowsPerWarp: 1 as const, us });

function layout(buckets: number): LayoutProfile {
  return {
    tunedAt: new Date(0).toISOString(),
    tuneMs: 1,
    method: "search",
    crossoverN: 8,
    buckets: Array.from({ length: buckets }, (_, b) => {
      const vector = choice("vector", b < 2 ? 2 : 16, 2);
      const tma = choice("tma", 8, b < 3 ? 3 : 1);
      return { bucket: b, n: 2 ** b, best: b < 3 ? vector : tma, bestVector: vector, bestTma: tma };
    }),
  };
}

describe("tableFromLayoutProfile", () => {
  it("gives every bucket its profile's best and best-vector choices", () => {
    const table = tableFromLayoutProfile(layout(5));
    expect(table).toHaveLength(BUCKET_COUNT);
    expect(dispatch(table, 1, true)).toEqual({ path: "vector", warps: 2, rowsPerWarp: 1 });
    expect(dispatch(table, 8, true)).toEqual({ path: "tma", warps: 8, rowsPerWarp: 1 });
    expect(dispatch(table, 8, false)).toEqual({ path: "vector", warps: 16, rowsPerWarp: 1 });
  });

  it("uses the last measured bucket for every larger n", () => {
    const table = tableFromLayoutProfile(layout(5));
    expect(dispatch(table, 17, true)).toEqual({ path: "tma", warps: 8, rowsPerWarp: 1 });
    expect(dispatch(table, 10_000_000, false)).toEqual({ path: "vector", warps: 16, rowsPerWarp: 1 });
  });

  it("drops the timings, keeping only what a launch needs", () => {
    for (const entry of tableFromLayoutProfile(layout(3))) expect(Object.keys(entry.best).sort()).toEqual(["path", "rowsPerWarp", "warps"]);
  });
});

describe("tunedLine", () => {
  it("names the GPU, the layout, the time, the crossover and where the profile went", () => {
    expect(tunedLine("NVIDIA H100", "1024+128/i64", 210, 4096, true, "/c/p.json")).toBe(
      "mla-kv: tuned NVIDIA H100 for 1024+128/i64 in 0.21 s (TMA from n = 4096); profile: /c/p.json",
    );
    expect(tunedLine("G", "k", 1, null, true, "p")).toContain("TMA never wins");
    expect(tunedLine("G", "k", 1, null, false, "p")).toContain("TMA not available");
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`first use during a graph capture, against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("never tunes or writes a profile while a capture is open, and uses the built-in rule", () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "mla-kv-capture-"));
    const log = join(cacheDir, "calls.log");
    const result = runInChild(`
      using stream = m.Stream.create();
      using kv = m.allocTensor("bf16", [64, 576]);
      using nope = m.allocTensor("bf16", [1000, 512]);
      using rope = m.allocTensor("bf16", [1000, 64]);
      using loc = m.fromHost(new BigInt64Array(1000).fill(-1n), "i64", [1000]);
      using graph = stream.capture(() => m.setMlaKvBuffer(kv, loc, nope, rope, { stream }));
      return "captured";
    `, { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: cacheDir, HOST_MLA_KV_LOG: log });
    expect(result.value, describeChild(result)).toBe("captured");
    // No profile file: nothing was tuned or stored.
    expect(readdirSync(cacheDir).filter((f) => f.endsWith(".json"))).toEqual([]);
    // The one call that crossed the FFI is the built-in rule's for n = 1000 on sm_90: TMA, 8 warps.
    const calls = Bun.file(log).text();
    return calls.then((text) => {
      expect(text.trim().split("\n")).toHaveLength(1);
      expect(text).toContain("path=2 warps_per_block=8 rows_per_warp=1");
    });
  });
});

describe.skipIf(!host)(`first use with a FIFO at the profile path, against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  // The first write reads the profile; an open of a FIFO for reading blocks until a writer comes,
  // so the child is killed after 20 s if that happens. Tuning on: the tune is made to fail for
  // want of memory (the fixture's allocation cap), so the write falls back to the built-in rule.
  for (const autotune of ["0", "1"]) {
    it(`writes the right bytes without blocking, with MLA_KV_AUTOTUNE=${autotune}, saying the profile is not a regular file`, () => {
      const cacheDir = mkdtempSync(join(tmpdir(), "mla-kv-fifo-"));
      const result = runInChild(`
        const { gpuIdentity } = await import(root + "/autotune/identity.ts");
        const { cacheDir, profilePath } = await import(root + "/autotune/cache_dir.ts");
        const path = profilePath(cacheDir(process.env), gpuIdentity(0));
        if (Bun.spawnSync(["mkfifo", path]).exitCode !== 0) throw new Error("mkfifo failed");
        ${TWO_ROW_WRITE}
        m.setMlaKvBuffer(kv, loc, kNope, kRope);
        return wrong(kv.download());
      `, {
        MLA_KV_LIBRARY: host!,
        MLA_KV_CACHE_DIR: cacheDir,
        MLA_KV_AUTOTUNE: autotune,
        MLA_KV_QUIET: "0",
        HOST_MLA_KV_MAX_ALLOC: String(64 * 2 ** 20),
      }, { timeoutMs: 20_000 });
      expect(result.value, describeChild(result)).toBe(0);
      expect(result.stderr).toMatch(/profile .* is unreadable \(.* is a FIFO, not a regular file\); (ignoring it|re-tuning and replacing it)/);
      if (autotune === "1") expect(result.stderr).toMatch(/tuning 1024\+128\/i32 on device 0 failed \(.*out of memory\); using the built-in rule/);
    }, 30_000);
  }
});
