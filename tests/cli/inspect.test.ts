import { describe, expect, it } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatInspect, type InspectReport } from "../../cli/inspect.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

describe("formatInspect", () => {
  it("says why no GPU is usable, and still names the library and the profile folder", () => {
    const text = formatInspect({
      packageVersion: "0.1.0",
      library: { path: "/x/libmla_kv.so", buildId: "abc-90a", abiVersion: 2 },
      cacheDir: "/home/u/.cache/mla-kv",
      gpus: { error: "no NVIDIA driver" },
    });
    expect(text).toContain("library: /x/libmla_kv.so");
    expect(text).toContain("build abc-90a, ABI 2");
    expect(text).toContain("profiles: /home/u/.cache/mla-kv");
    expect(text).toContain("GPUs: none usable (no NVIDIA driver)");
  });

  it("says the library did not load, with the reason", () => {
    const report: InspectReport = { packageVersion: "0.1.0", library: { error: "LIBRARY_NOT_FOUND: tried /a, /b" }, cacheDir: "/c", gpus: { error: "the library did not load" } };
    expect(formatInspect(report)).toContain("library: not loaded (LIBRARY_NOT_FOUND: tried /a, /b)");
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`inspect against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const run = (body: string) => runInChild(`
    const { inspect, formatInspect } = await import(root + "/cli/inspect.ts");
    ${body}
  `, { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: mkdtempSync(join(tmpdir(), "mla-kv-inspect-")) });

  it("lists each GPU with its properties, the paths it runs and that no profile exists yet", () => {
    const result = run(`return formatInspect(inspect());`);
    const text = String(result.value);
    expect(text, describeChild(result)).toContain("GPUs: 1");
    expect(text).toContain("paths: vector, tma");
    expect(text).toContain("profile: none yet: the first write of each layout tunes it");
  });

  it("shows the user profile a GPU's writes will read, per layout", () => {
    const result = run(`
      const { gpuIdentity } = await import(root + "/autotune/identity.ts");
      const { makeProfile } = await import(root + "/autotune/profile.ts");
      const { writeProfileFile } = await import(root + "/autotune/store.ts");
      const { cacheDir, profilePath } = await import(root + "/autotune/cache_dir.ts");
      const identity = gpuIdentity(0);
      const c = { path: "vector", warps: 4, rowsPerWarp: 1, us: 1 };
      const layout = { tunedAt: "2026-11-24T00:00:00.000Z", tuneMs: 1, method: "search", crossoverN: 2048, buckets: [{ bucket: 0, n: 1, best: c, bestVector: c, bestTma: null }] };
      writeProfileFile(profilePath(cacheDir(process.env), identity), makeProfile(identity, { "1024+128/i64": layout }));
      return inspect().gpus[0].profile;
    `);
    expect(result.value, describeChild(result)).toMatchObject({ source: "user", layouts: { "1024+128/i64": { crossoverN: 2048, method: "search" } } });
  });
});

describe("the mla-kv command", () => {
  it("refuses an unknown command with its usage and exit code 2", () => {
    const proc = Bun.spawnSync(["bun", join(import.meta.dir, "..", "..", "cli", "mla_kv.ts"), "bogus"]);
    expect(proc.exitCode).toBe(2);
    expect(proc.stderr.toString()).toContain("usage: mla-kv <inspect|autotune>");
  });
});
