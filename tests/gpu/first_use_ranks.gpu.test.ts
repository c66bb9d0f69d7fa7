/**
 * Eight processes on one GPU start at once with no profile and write the same new layout, like
 * the tensor-parallel ranks of an inference server: every write is byte-exact, exactly one of them
 * tunes (the others wait for it, then read its profile), and one valid profile remains.
 */
import { describe, expect, it } from "bun:test";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gpuIdentity } from "../../autotune/identity.ts";
import { readProfileFile } from "../../autotune/store.ts";
import { gpuSuiteName, probeGpu } from "../helpers/gpu.ts";

const gpu = probeGpu();

describe.skipIf(!gpu.ok)(gpuSuiteName("first use by eight processes at once"), () => {
  it("writes correct bytes in every process, tunes once, and leaves one valid profile", async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "mla-kv-ranks-"));
    const worker = join(import.meta.dir, "fixtures", "rank_worker.ts");
    const env = { ...process.env, MLA_KV_CACHE_DIR: cacheDir, MLA_KV_QUIET: "0", MLA_KV_AUTOTUNE: "1" };
    const ranks = Array.from({ length: 8 }, (_, rank) =>
      Bun.spawn([process.execPath, worker, String(rank)], { env, stdout: "pipe", stderr: "pipe" }),
    );
    const results = await Promise.all(ranks.map(async (p) => ({
      code: await p.exited,
      out: await new Response(p.stdout).text(),
      err: await new Response(p.stderr).text(),
    })));
    for (const r of results) expect(r.code, r.err).toBe(0);
    const lines = results.map((r) => JSON.parse(r.out.trim().split("\n").pop()!) as { rank: number; wrong: number });
    expect(lines.map((l) => l.wrong)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const tunedLines = results.filter((r) => r.err.includes("mla-kv: tuned")).length;
    expect(tunedLines).toBe(1);
    const files = readdirSync(cacheDir).filter((f) => f.endsWith(".json"));
    expect(files).toHaveLength(1);
    const read = readProfileFile(join(cacheDir, files[0]!), gpuIdentity(0));
    expect(read.ok).toBe(true);
    if (read.ok) expect(Object.keys(read.profile.layouts)).toContain("1056+128/i32");
  }, 120_000);
});
