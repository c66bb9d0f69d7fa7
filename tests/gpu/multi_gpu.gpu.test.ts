/**
 * A host with several GPUs, as tensor-parallel inference servers run: one process per GPU, all
 * started at once with no profile, each writing the same new layout on its own GPU. Every write
 * is byte-exact; identical GPUs share one identity, so exactly one process tunes and one profile
 * remains; `bun run inspect` lists every GPU. Needs two or more GPUs and skips, saying so, with
 * fewer.
 */
import { describe, expect, it } from "bun:test";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gpuIdentity } from "../../autotune/identity.ts";
import { identityKey } from "../../autotune/profile.ts";
import { readProfileFile } from "../../autotune/store.ts";
import { deviceCount } from "../../mod.ts";
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";
import { gpuSuiteName, probeGpu } from "../helpers/gpu.ts";

const gpu = probeGpu();
const count = gpu.ok ? deviceCount() : 0;
const name = gpu.ok && count < 2 ? `one process per GPU (skipped: ${count} GPU here, this needs 2 or more)` : gpuSuiteName("one process per GPU");

describe.skipIf(!gpu.ok || count < 2)(name, () => {
  it("writes correct bytes on every GPU, tunes once per distinct GPU setup, and keeps one profile per setup", async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "mla-kv-gpus-"));
    const worker = join(import.meta.dir, "fixtures", "rank_worker.ts");
    const env = { ...process.env, MLA_KV_CACHE_DIR: cacheDir, MLA_KV_QUIET: "0", MLA_KV_AUTOTUNE: "1" };
    const ranks = Array.from({ length: count }, (_, device) =>
      Bun.spawn([process.execPath, worker, String(device), String(device)], { env, stdout: "pipe", stderr: "pipe" }),
    );
    const results = await Promise.all(ranks.map(async (p) => ({
      code: await p.exited,
      out: await new Response(p.stdout).text(),
      err: await new Response(p.stderr).text(),
    })));
    for (const r of results) expect(r.code, r.err).toBe(0);
    const lines = results.map((r) => JSON.parse(r.out.trim().split("\n").pop()!) as { device: number; wrong: number });
    expect(lines.map((l) => l.device)).toEqual(Array.from({ length: count }, (_, d) => d));
    expect(lines.every((l) => l.wrong === 0)).toBe(true);

    // Identical GPUs (same name, compute capability, SMs, driver, runtime, library) share a profile.
    const setups = new Set(Array.from({ length: count }, (_, d) => identityKey(gpuIdentity(d))));
    expect(results.filter((r) => r.err.includes("mla-kv: tuned")).length).toBe(setups.size);
    const files = readdirSync(cacheDir).filter((f) => f.endsWith(".json"));
    expect(files.sort()).toEqual([...setups].map((k) => `${k}.json`).sort());
    for (let d = 0; d < count; ++d) {
      const read = readProfileFile(join(cacheDir, `${identityKey(gpuIdentity(d))}.json`), gpuIdentity(d));
      expect(read.ok).toBe(true);
      if (read.ok) expect(Object.keys(read.profile.layouts)).toContain("1056+128/i32");
    }

    const inspect = Bun.spawnSync([process.execPath, join(PACKAGE_ROOT, "cli", "inspect.ts")], { env });
    const text = inspect.stdout.toString();
    expect(inspect.exitCode, inspect.stderr.toString()).toBe(0);
    expect(text).toContain(`GPUs: ${count}`);
    for (let d = 0; d < count; ++d) expect(text).toMatch(new RegExp(`^  ${d}  \\S`, "m"));
  }, 180_000);
});
