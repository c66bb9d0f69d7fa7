#!/usr/bin/env bun
/**
 * `bun run build`: compiles cuda/ into build/libmla_kv.so with nvcc — one fat library with static
 * cudart, SASS for every supported arch and PTX for the newest so future GPUs JIT it.
 *
 *   bun run build                 all architectures (what CI and releases build)
 *   MLA_KV_ARCHS=90a bun run build  only sm_90a (a fast local build while iterating on a kernel)
 *   NVCC=/path/to/nvcc bun run build
 *   bun run build --bench         also the benchmark's reference kernels (build/libmla_kv_bench.so)
 *                                 and its C host loop (build/host_loop); not part of the package
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { cudaSourceHash } from "../ffi/source_hash.ts";

const root = resolve(import.meta.dir, "..");
const cudaDir = join(root, "cuda");
const outDir = join(root, "build");
const output = join(outDir, "libmla_kv.so");

/** SASS targets; the `a` variants unlock the arch-specific features of Hopper and Blackwell. */
export const SASS_ARCHS = ["75", "80", "86", "89", "90a", "100a", "103a", "120"] as const;
/** PTX is embedded for the newest portable target, so an unknown future GPU can still JIT it. */
export const PTX_ARCH = "120";

function gencodeFlags(archs: readonly string[], ptx: string | null): string[] {
  const flags = archs.map((a) => `-gencode=arch=compute_${a},code=sm_${a}`);
  if (ptx) flags.push(`-gencode=arch=compute_${ptx},code=compute_${ptx}`);
  return flags;
}


function main(): number {
  const nvcc = process.env.NVCC ?? "nvcc";
  const which = Bun.spawnSync(["sh", "-c", `command -v ${JSON.stringify(nvcc)}`]);
  if (which.exitCode !== 0) {
    console.error(
      `build: '${nvcc}' was not found on the PATH. Install the CUDA toolkit (12.8 or newer; 13.x recommended) ` +
        `or set NVCC to its path. Users of the published package don't need it: the package ships a prebuilt library.`,
    );
    return 1;
  }
  const requested = process.env.MLA_KV_ARCHS?.split(",").map((s) => s.trim()).filter(Boolean);
  const archs = requested && requested.length > 0 ? requested : [...SASS_ARCHS];
  const ptx = requested && requested.length > 0 ? null : PTX_ARCH;
  // Deterministic: the same sources and targets give the same id, so a profile measured with one
  // build (bundled ones included) is used by every rebuild of it, and by nothing else.
  const buildId = `${cudaSourceHash(cudaDir)}-${archs.join(".")}`;

  mkdirSync(outDir, { recursive: true });
  const tmp = `${output}.tmp-${process.pid}`;
  const args = [
    nvcc,
    "-O3",
    "-std=c++17",
    "-shared",
    "-Xcompiler=-fPIC,-fvisibility=hidden",
    "--cudart=static",
    "--threads=0",
    // The fatbinary is compressed for size: the quantizing kernels are many and long, and the
    // driver decompresses the one image it loads once, at module load.
    "--compress-mode=size",
    "-Xptxas=-warn-spills",
    `-DMLA_KV_BUILD_ID="${buildId}"`,
    ...gencodeFlags(archs, ptx),
    "-o",
    tmp,
    join(cudaDir, "capi.cu"),
  ];
  console.log(`build: nvcc for ${archs.map((a) => `sm_${a}`).join(", ")}${ptx ? ` + compute_${ptx} PTX` : ""}`);
  const t0 = performance.now();
  const run = Bun.spawnSync(args, { stdout: "inherit", stderr: "inherit" });
  if (run.exitCode !== 0) {
    console.error(`build: nvcc failed (exit ${run.exitCode}); command:\n  ${args.join(" ")}`);
    return run.exitCode ?? 1;
  }
  // Rename into place so a process that has the old library open never sees a half-written file.
  renameSync(tmp, output);
  console.log(`build: ${output} (${buildId}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (process.argv.includes("--bench")) return buildBench(nvcc, archs, ptx);
  return existsSync(output) ? 0 : 1;
}

/** The benchmark's own artifacts: reference kernels in a second library, and the C host loop. */
function buildBench(nvcc: string, archs: readonly string[], ptx: string | null): number {
  const steps: string[][] = [
    [nvcc, "-O3", "-std=c++17", "-shared", "-Xcompiler=-fPIC,-fvisibility=hidden", "--cudart=static", "--threads=0",
      ...gencodeFlags(archs, ptx), "-o", join(outDir, "libmla_kv_bench.so"), join(root, "bench", "bench_kernels.cu")],
    ["cc", "-O2", "-std=c11", "-o", join(outDir, "host_loop"), join(root, "bench", "host_loop.c"), `-L${outDir}`,
      "-lmla_kv", "-Wl,-rpath,$ORIGIN"],
  ];
  for (const args of steps) {
    const run = Bun.spawnSync(args, { stdout: "inherit", stderr: "inherit" });
    if (run.exitCode !== 0) {
      console.error(`build: failed (exit ${run.exitCode}):\n  ${args.join(" ")}`);
      return run.exitCode ?? 1;
    }
  }
  console.log(`build: ${join(outDir, "libmla_kv_bench.so")} and ${join(outDir, "host_loop")}`);
  return 0;
}

if (import.meta.main) process.exit(main());
