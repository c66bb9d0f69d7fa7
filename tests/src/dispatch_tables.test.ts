import { describe, expect, it } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

const host = hostLibrary();
describe.skipIf(!host)(`tableFor against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const body = (layout: string) => `
    const { tableFor } = await import(root + "/src/dispatch_tables.ts");
    const { builtinTable } = await import(root + "/src/dispatch.ts");
    const a = tableFor(0, ${layout});
    const b = tableFor(0, ${layout});
    const other = tableFor(0, { nopeBytes: 512, ropeBytes: 144, locBytes: 4 });
    return { cached: a === b, perLayout: a !== other, sameAsBuiltin: JSON.stringify(a) === JSON.stringify(builtinTable(m.deviceInfo(0).computeCapability[0])), lastPath: a[17].best.path };
  `;
  const noTuning = () => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", MLA_KV_CACHE_DIR: mkdtempSync(join(tmpdir(), "mla-kv-tables-")) });

  it("serves the built-in rule for the GPU's architecture when no profile exists and autotuning is off, cached per device and layout", () => {
    const result = runInChild(body(`{ nopeBytes: 1024, ropeBytes: 128, locBytes: 8 }`), noTuning());
    expect(result.value, describeChild(result)).toEqual({ cached: true, perLayout: true, sameAsBuiltin: true, lastPath: "tma" });
  });

  it("follows the compute capability the device reports", () => {
    const result = runInChild(body(`{ nopeBytes: 1024, ropeBytes: 128, locBytes: 8 }`), { ...noTuning(), HOST_MLA_KV_CC_MAJOR: "8" });
    expect((result.value as { lastPath: string }).lastPath, describeChild(result)).toBe("vector");
  });

  it("serves the choices of a stored profile for this GPU instead of the built-in rule", () => {
    const result = runInChild(`
      const { tableFor } = await import(root + "/src/dispatch_tables.ts");
      const { gpuIdentity } = await import(root + "/autotune/identity.ts");
      const { makeProfile, identityKey } = await import(root + "/autotune/profile.ts");
      const { writeProfileFile } = await import(root + "/autotune/store.ts");
      const { cacheDir, profilePath } = await import(root + "/autotune/cache_dir.ts");
      const identity = gpuIdentity(0);
      const vector = (warps) => ({ path: "vector", warps, rowsPerWarp: 2, us: 1 });
      const buckets = Array.from({ length: 17 }, (_, b) => ({ bucket: b, n: 2 ** b, best: vector(b < 9 ? 2 : 16), bestVector: vector(b < 9 ? 2 : 16), bestTma: null }));
      const layout = { tunedAt: new Date().toISOString(), tuneMs: 1, method: "search", crossoverN: null, buckets };
      const written = writeProfileFile(profilePath(cacheDir(process.env), identity), makeProfile(identity, { "1024+128/i64": layout }));
      if (!written.ok) throw new Error(written.detail);
      const t = tableFor(0, { nopeBytes: 1024, ropeBytes: 128, locBytes: 8 });
      return [t[0].best, t[12].best, t[17].best];
    `, noTuning());
    expect(result.value, describeChild(result)).toEqual([
      { path: "vector", warps: 2, rowsPerWarp: 2 },
      { path: "vector", warps: 16, rowsPerWarp: 2 },
      { path: "vector", warps: 16, rowsPerWarp: 2 },
    ]);
  });
});
