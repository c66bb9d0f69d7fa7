import { describe, expect, it } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableFromLayoutProfile, tunedLine } from "../../autotune/first_use.ts";
import type { LayoutProfile } from "../../autotune/profile.ts";
import { choose, entryFor } from "../../src/dispatch.ts";
import { BUCKET_COUNT } from "../../src/vocabulary.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { TWO_ROW_WRITE } from "../helpers/two_row_write.ts";
import { fakeLayoutProfile } from "./fixtures/fake.ts";

const launch = (path: "vector" | "tma" | "specialized" | "spread", warps: 0 | 1 | 2 | 4 | 8 | 16, us: number) => ({ path, warps, rowsPerWarp: 1 as const, us });

/** Buckets 0..buckets-1: spread first up to n = 2, specialized from 4, and TMA first at n = 16. */
function layout(buckets: number): LayoutProfile {
  return {
    tunedAt: new Date(0).toISOString(),
    tuneMs: 1,
    method: "search",
    pdl: true,
    buckets: Array.from({ length: buckets }, (_, b) => ({
      bucket: b,
      n: 2 ** b,
      ranked:
        b < 2
          ? [launch("spread", 0, 1), launch("specialized", 2, 2), launch("vector", 2, 3)]
          : b < 4
            ? [launch("specialized", 4, 1), launch("vector", 16, 2), launch("tma", 8, 3)]
            : [launch("tma", 8, 1), launch("specialized", 8, 2), launch("vector", 16, 3)],
    })),
  };
}

describe("tableFromLayoutProfile", () => {
  it("gives every bucket its profile's launches in their ranked order", () => {
    const table = tableFromLayoutProfile(layout(5));
    expect(table).toHaveLength(BUCKET_COUNT);
    expect(entryFor(table, 1).map((c) => c.path)).toEqual(["spread", "specialized", "vector"]);
    expect(entryFor(table, 8).map((c) => c.path)).toEqual(["specialized", "vector", "tma"]);
    expect(entryFor(table, 16).map((c) => c.path)).toEqual(["tma", "specialized", "vector"]);
  });

  it("lets dispatch fall through the ranks to the first launch a call can take", () => {
    const table = tableFromLayoutProfile(layout(5));
    expect(choose(table, 16, () => true)).toEqual({ path: "tma", warps: 8, rowsPerWarp: 1 });
    expect(choose(table, 16, (c) => c.path !== "tma")).toEqual({ path: "specialized", warps: 8, rowsPerWarp: 1 });
    expect(choose(table, 16, (c) => c.path === "vector")).toEqual({ path: "vector", warps: 16, rowsPerWarp: 1 });
  });

  it("uses the last measured bucket for every larger n", () => {
    const table = tableFromLayoutProfile(layout(5));
    for (const n of [17, 1024, 65536, 10_000_000]) expect(entryFor(table, n)).toEqual(entryFor(table, 16));
  });

  it("drops the timings, keeping only what a launch needs, and freezes what it gives", () => {
    const table = tableFromLayoutProfile(fakeLayoutProfile());
    expect(Object.isFrozen(table)).toBe(true);
    for (const entry of table) {
      expect(Object.isFrozen(entry)).toBe(true);
      for (const c of entry) {
        expect(Object.keys(c).sort()).toEqual(["path", "rowsPerWarp", "warps"]);
        expect(Object.isFrozen(c)).toBe(true);
      }
    }
  });

  it("keeps a profile's buckets in bucket order whatever order they are listed in", () => {
    const lp = layout(5);
    lp.buckets.reverse();
    expect(entryFor(tableFromLayoutProfile(lp), 1).map((c) => c.path)).toEqual(["spread", "specialized", "vector"]);
  });
});

describe("tunedLine", () => {
  it("names the GPU, the layout, the time, each path that ranks first somewhere and where the profile went", () => {
    expect(tunedLine("NVIDIA H100", "1024+128/i64", 210, layout(5), "/c/p.json")).toBe(
      "mla-kv: tuned NVIDIA H100 for 1024+128/i64 in 0.21 s (fastest: spread, specialized, tma); profile: /c/p.json",
    );
    expect(tunedLine("G", "k", 1500, layout(2), "p")).toBe("mla-kv: tuned G for k in 1.50 s (fastest: spread); profile: p");
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`first use against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
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
    // The one call that crossed the FFI is the built-in rule's for n = 1000 of 1152-byte rows:
    // the specialized copy with 8 warps.
    const lines = readFileSync(log, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("n=1000 ");
    expect(lines[0]).toContain("path=3 warps_per_block=8 rows_per_warp=1");
  });

  it("asks again after a capture for want of a profile, and keeps a stored profile's table for good", () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "mla-kv-first-use-"));
    const result = runInChild(`
      const { profiledTable } = await import(root + "/autotune/first_use.ts");
      const { copyLayout } = await import(root + "/src/layout_key.ts");
      const { storeProfile } = await import(root + "/tests/autotune/fixtures/stored_profile.ts");
      const { fakeLayoutProfile } = await import(root + "/tests/autotune/fixtures/fake.ts");
      const env = { ...process.env, MLA_KV_AUTOTUNE: "0" };
      using stream = m.Stream.create();
      const out = {};
      stream.capture(() => { out.capturing = profiledTable(0, copyLayout(1024, 128, 8), stream, env).final; }).destroy();
      out.eagerWithoutProfile = profiledTable(0, copyLayout(1024, 128, 8), undefined, env).final;
      storeProfile(0, { "1024+128/i64": fakeLayoutProfile(3) }, env);
      stream.capture(() => {
        const { table, final } = profiledTable(0, copyLayout(1024, 128, 8), stream, env);
        out.capturingWithProfile = { final, first: table[0][0], last: table[16][0] };
      }).destroy();
      return out;
    `, { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: cacheDir });
    const fake = fakeLayoutProfile(3);
    const strip = ({ us: _us, ...launch }: { us: number }) => launch;
    expect(result.value, describeChild(result)).toEqual({
      capturing: false,
      eagerWithoutProfile: true,
      capturingWithProfile: { final: true, first: strip(fake.buckets[0]!.ranked[0]!), last: strip(fake.buckets[16]!.ranked[0]!) },
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
