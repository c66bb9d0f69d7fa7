import { describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatInspect, inspectHelp, type InspectReport } from "../../cli/inspect.ts";
import { describeRun, expectHelp, expectUsageError, runCommand } from "../helpers/commands.ts";
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

describe("bun run inspect", () => {
  it("prints its help to stdout and exits 0, naming every flag and exit status", () => {
    for (const flag of ["--help", "-h"]) {
      const help = expectHelp("cli/inspect.ts", "Usage: bun run inspect [--json]\n", [flag]);
      expect(help).toBe(inspectHelp());
      expect(help).toContain("Exit status: 0 done; 1 the library did not load, or the GPUs could not be asked about; 2 bad flags; 3 no usable NVIDIA GPU here.");
    }
  });

  it("exits 2 with one sentence for a flag it does not know", () => {
    expectUsageError("cli/inspect.ts", ["--frobnicate"], "inspect: unknown flag --frobnicate; see --help.\n");
  });

  it("exits 1, after its report, when the library could not be loaded", () => {
    const r = runCommand("cli/inspect.ts", [], { MLA_KV_LIBRARY: join(tmpdir(), "no-such-dir", "libmla_kv.so") });
    expect(r.exitCode, describeRun(r)).toBe(1);
    expect(r.stdout).toContain("library: not loaded (");
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`inspect against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const run = (body: string, env: Record<string, string> = {}) => runInChild(`
    const { inspect, formatInspect } = await import(root + "/cli/inspect.ts");
    ${body}
  `, { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: mkdtempSync(join(tmpdir(), "mla-kv-inspect-")), ...env });

  it("exits 0 when it lists a GPU, and 3 when the library loads but there is no GPU here", () => {
    const cache = mkdtempSync(join(tmpdir(), "mla-kv-inspect-"));
    const some = runCommand("cli/inspect.ts", [], { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: cache });
    expect(some.exitCode, describeRun(some)).toBe(0);
    const none = runCommand("cli/inspect.ts", ["--json"], { MLA_KV_LIBRARY: host!, MLA_KV_CACHE_DIR: cache, HOST_MLA_KV_DEVICE_COUNT: "0" });
    expect(none.exitCode, describeRun(none)).toBe(3);
    expect(JSON.parse(none.stdout).gpus).toEqual([]);
  });

  it("does not promise a saved tune when the cache dir cannot be written, and says why", () => {
    const file = join(mkdtempSync(join(tmpdir(), "mla-kv-inspect-")), "a-file");
    writeFileSync(file, "not a directory");
    const result = run(`return formatInspect(inspect());`, { MLA_KV_CACHE_DIR: join(file, "cache") });
    const text = String(result.value);
    expect(text, describeChild(result)).toContain(`profile: none, and none can be saved (${file} is not a directory): every process tunes each layout again at its first write`);
    expect(text).not.toContain("the first write of each layout tunes it");
  });

  it("says that writes use the built-in rule when tuning on first use is off", () => {
    const result = run(`return formatInspect(inspect());`, { MLA_KV_AUTOTUNE: "0" });
    expect(String(result.value), describeChild(result)).toContain("profile: none: tuning on first use is off (MLA_KV_AUTOTUNE), so writes use the built-in rule");
  });

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
      const spread = { path: "spread", warps: 0, rowsPerWarp: 1, us: 1 };
      const vector = { path: "vector", warps: 4, rowsPerWarp: 1, us: 1.2 };
      const layout = { tunedAt: "2026-11-24T00:00:00.000Z", tuneMs: 1, method: "search", pdl: true, buckets: [{ bucket: 0, n: 1, ranked: [spread, vector] }] };
      writeProfileFile(profilePath(cacheDir(process.env), identity), makeProfile(identity, { "1024+128/i64": layout }));
      return inspect().gpus[0].profile;
    `);
    expect(result.value, describeChild(result)).toMatchObject({ source: "user", layouts: { "1024+128/i64": { fastest: "fastest: spread at n = 1", method: "search" } } });
  });
});
