#!/usr/bin/env bun
/**
 * `bun run build`: compiles cuda/ into build/libmla_kv.so with nvcc — one fat library with static
 * cudart, SASS for every supported arch and PTX for the newest so future GPUs JIT it. Run with
 * --help for the variables and flags (USAGE below).
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { embeddedBuildId, makeBuildId } from "../ffi/build_id.ts";
import { cudaSourceHash } from "../ffi/source_hash.ts";

const root = resolve(import.meta.dir, "..");
const cudaDir = join(root, "cuda");
const outDir = join(root, "build");
const output = join(outDir, "libmla_kv.so");
const logFile = join(outDir, "nvcc.log");

/** SASS targets; the `a` variants unlock the arch-specific features of Hopper and Blackwell. */
export const SASS_ARCHS = ["75", "80", "86", "89", "90a", "100a", "103a", "120"] as const;
/** PTX is embedded for the newest portable target, so an unknown future GPU can still JIT it. */
export const PTX_ARCH = "120";
/** What a full build costs, said before it starts (measured on this project's CI machine). */
const FULL_BUILD_TIME = "about 6-7 minutes on 2 cores for all 8 architectures";

const USAGE = `usage: bun run build [--bench] [--force] [--help]

Compiles cuda/ into build/libmla_kv.so with nvcc (12.8 or newer; 12.9 or newer for sm_103a, which
the full build includes). A library already built from the same sources for the same
architectures is kept ("up to date"); --force rebuilds it. nvcc's output, ptxas's spill report
included, goes to build/nvcc.log.

  MLA_KV_ARCHS   the SASS architectures to build, comma-separated (e.g. 90a or 80,90a);
                 unset: all of ${SASS_ARCHS.join(", ")} plus compute_${PTX_ARCH} PTX
                 (${FULL_BUILD_TIME});
                 native: the GPUs of this machine (nvidia-smi), or all when it finds none
  NVCC           the nvcc to use (default: nvcc on the PATH)
  --bench        also the benchmark's reference kernels (build/libmla_kv_bench.so) and its C
                 host loop (build/host_loop); not part of the package, always rebuilt
  --force        rebuild even when build/libmla_kv.so is up to date`;

/** The targets of one build: SASS architectures and the PTX, if any, for future GPUs. */
export interface BuildTargets {
  readonly archs: readonly string[];
  readonly ptx: string | null;
  /** Said before the build, when the choice needs explaining. */
  readonly note?: string;
}

const archNumber = (arch: string) => Number.parseInt(arch, 10);

/** The SASS arch nvcc needs for a GPU of compute capability "9.0": the list's `a` variant if it has one. */
export function archOfComputeCapability(capability: string): string | null {
  const match = /^(\d+)\.(\d+)$/.exec(capability.trim());
  if (match === null) return null;
  const plain = `${match[1]}${match[2]}`;
  return SASS_ARCHS.find((arch) => arch === `${plain}a`) ?? plain;
}

/**
 * What to build for the MLA_KV_ARCHS value `requested` ("native" asks `gpuCapabilities`, which
 * returns the compute capabilities of the GPUs present, or an error). The full list, however it is
 * asked for, gets the PTX too, so equal build ids always mean equal libraries.
 */
export function buildTargets(
  requested: string | undefined,
  gpuCapabilities: () => string[] | { error: string } = nvidiaSmiCapabilities,
): BuildTargets {
  const full: BuildTargets = { archs: [...SASS_ARCHS], ptx: PTX_ARCH };
  const value = requested?.trim() ?? "";
  if (value === "") return full;
  let archs: string[];
  let note: string | undefined;
  if (value === "native") {
    const found = gpuCapabilities();
    if (!Array.isArray(found) || found.length === 0) {
      const why = Array.isArray(found) ? "nvidia-smi lists no GPU" : found.error;
      return { ...full, note: `MLA_KV_ARCHS=native: no GPU found here (${why}); building every architecture` };
    }
    archs = found.map((cap) => archOfComputeCapability(cap)).filter((a): a is string => a !== null);
    note = `MLA_KV_ARCHS=native: this machine's GPUs are compute capability ${[...new Set(found)].join(", ")}`;
  } else {
    archs = value.split(",").map((s) => s.trim()).filter(Boolean);
  }
  const unique = [...new Set(archs)].sort((a, b) => archNumber(a) - archNumber(b) || a.localeCompare(b));
  const isFull = unique.length === SASS_ARCHS.length && SASS_ARCHS.every((a) => unique.includes(a));
  return { archs: isFull ? [...SASS_ARCHS] : unique, ptx: isFull ? PTX_ARCH : null, ...(note ? { note } : {}) };
}

function nvidiaSmiCapabilities(): string[] | { error: string } {
  try {
    const run = Bun.spawnSync(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], { stdout: "pipe", stderr: "pipe" });
    if (run.exitCode !== 0) return { error: `nvidia-smi exited ${run.exitCode}: ${run.stderr.toString().trim() || run.stdout.toString().trim()}` };
    return run.stdout.toString().split("\n").map((l) => l.trim()).filter(Boolean);
  } catch {
    return { error: "nvidia-smi is not installed" };
  }
}

function gencodeFlags(archs: readonly string[], ptx: string | null): string[] {
  const flags = archs.map((a) => `-gencode=arch=compute_${a},code=sm_${a}`);
  if (ptx) flags.push(`-gencode=arch=compute_${ptx},code=compute_${ptx}`);
  return flags;
}

/** One line about nvcc's log: how many spill warnings and other warnings it holds, and where it is. */
export function logSummary(log: string, path: string): string {
  const lines = log.split("\n");
  // ptxas (-warn-spills): "Registers are spilled to local memory in function '…', N bytes spill stores, …"
  const spills = lines.filter((l) => /bytes spill stores/.test(l)).length;
  const warnings = lines.filter((l) => /warning/i.test(l) && !/bytes spill stores/.test(l)).length;
  return `ptxas: ${spills} function${spills === 1 ? " spills" : "s spill"} registers, ${warnings} other warning${warnings === 1 ? "" : "s"}; nvcc's whole output is in ${path}`;
}

/** A path as the build's messages show it: relative to the working directory. */
const shownPath = (path: string) => relative(process.cwd(), path) || path;

function describeTargets(t: BuildTargets): string {
  return `${t.archs.map((a) => `sm_${a}`).join(", ")}${t.ptx ? ` + compute_${t.ptx} PTX` : ""}`;
}

function main(argv: readonly string[]): number {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const unknown = argv.filter((a) => a !== "--bench" && a !== "--force");
  if (unknown.length > 0) {
    console.error(`build: unknown argument ${JSON.stringify(unknown[0])}\n${USAGE}`);
    return 2;
  }
  const nvcc = process.env.NVCC ?? "nvcc";
  const which = Bun.spawnSync(["sh", "-c", `command -v ${JSON.stringify(nvcc)}`]);
  if (which.exitCode !== 0) {
    console.error(
      `build: '${nvcc}' was not found on the PATH. Install the CUDA toolkit (12.8 or newer; 13.x recommended) ` +
        `or set NVCC to its path. Users of the published package don't need it: the package ships a prebuilt library.`,
    );
    return 1;
  }
  const targets = buildTargets(process.env.MLA_KV_ARCHS);
  if (targets.note) console.log(`build: ${targets.note}`);
  // Deterministic: the same code and targets give the same id, so a profile measured with one
  // build (bundled ones included) is used by every rebuild of it, and by nothing else.
  const sourceHash = cudaSourceHash(cudaDir)!;
  const buildId = makeBuildId(sourceHash, targets.archs);
  const shown = shownPath(output);

  if (!argv.includes("--force") && existsSync(output) && embeddedBuildId(output, sourceHash) === buildId) {
    console.log(`build: ${shown} is up to date (${buildId}); --force rebuilds it`);
  } else {
    const status = compile(nvcc, targets, buildId);
    if (status !== 0) return status;
  }
  if (argv.includes("--bench")) return buildBench(nvcc, targets);
  return 0;
}

function compile(nvcc: string, targets: BuildTargets, buildId: string): number {
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
    ...gencodeFlags(targets.archs, targets.ptx),
    "-o",
    tmp,
    join(cudaDir, "capi.cu"),
  ];
  const isFull = targets.ptx !== null;
  console.log(
    `build: nvcc for ${describeTargets(targets)}: ${isFull ? FULL_BUILD_TIME : `about 45 s an architecture on 2 cores`}` +
      `${isFull ? "; MLA_KV_ARCHS=native builds only this machine's GPUs" : ""}`,
  );
  const t0 = performance.now();
  const run = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
  const log = `$ ${args.join(" ")}\n${run.stdout.toString()}${run.stderr.toString()}`;
  writeFileSync(logFile, log);
  const shownLog = shownPath(logFile);
  if (run.exitCode !== 0) {
    rmSync(tmp, { force: true });
    const errors = log.split("\n").filter((l) => /error/i.test(l)).slice(0, 20);
    console.error(`build: nvcc failed (exit ${run.exitCode}); the whole output is in ${shownLog}${errors.length ? `:\n  ${errors.join("\n  ")}` : ""}`);
    return run.exitCode ?? 1;
  }
  // Rename into place so a process that has the old library open never sees a half-written file.
  renameSync(tmp, output);
  console.log(`build: ${logSummary(log, shownLog)}`);
  console.log(`build: ${shownPath(output)} (${buildId}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
}

/** The benchmark's own artifacts: reference kernels in a second library, and the C host loop. */
function buildBench(nvcc: string, targets: BuildTargets): number {
  const steps: string[][] = [
    [nvcc, "-O3", "-std=c++17", "-shared", "-Xcompiler=-fPIC,-fvisibility=hidden", "--cudart=static", "--threads=0",
      ...gencodeFlags(targets.archs, targets.ptx), "-o", join(outDir, "libmla_kv_bench.so"), join(root, "bench", "bench_kernels.cu")],
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

if (import.meta.main) process.exit(main(process.argv.slice(2)));
