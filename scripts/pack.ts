#!/usr/bin/env bun
/**
 * `bun run pack`: the publishable tarball, mla-kv-<version>.tgz.
 *
 *   1. The fat library: `bun run build` for every architecture (it keeps an up-to-date
 *      build/libmla_kv.so and rebuilds a stale one); then the library's own build id must name
 *      these CUDA sources and every architecture, or nothing is packed: a package built for one
 *      GPU, or from other sources, would fail on its users' machines.
 *   2. It is copied to prebuilt/linux-x64/libmla_kv.so, so installing needs no CUDA toolkit, only
 *      an NVIDIA driver (R580+ for the CUDA 13.0 runtime linked in).
 *   3. dist/: the modules compiled to JavaScript with their .d.ts (tsconfig.build.json), which
 *      Deno loads from node_modules (it does not strip types there); Bun loads the sources.
 *   4. `bun pm pack`.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { buildIdArchs, embeddedBuildId } from "../ffi/build_id.ts";
import { cudaSourceHash } from "../ffi/source_hash.ts";
import { SASS_ARCHS } from "./build.ts";

const root = resolve(import.meta.dir, "..");

/** Where the packed library goes, so installing needs no CUDA toolkit. */
export const PREBUILT_LIBRARY = join(root, "prebuilt", "linux-x64", "libmla_kv.so");

/** The tarball `bun pm pack` writes: mla-kv-<version>.tgz at the package root. */
export function tarballPath(): string {
  const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version as string;
  return join(root, `mla-kv-${version}.tgz`);
}

function run(args: string[], env: Record<string, string | undefined> = process.env): void {
  const p = Bun.spawnSync(args, { cwd: root, env, stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} failed with exit ${p.exitCode}`);
}

/** Why the library at `path` must not be shipped, or null when it may (these sources, every architecture). */
export function unshippable(path: string, sourceHash: string): string | null {
  const id = embeddedBuildId(path, sourceHash);
  if (id === null) return `${path} holds no build id of these CUDA sources (${sourceHash}): it is stale`;
  const archs = buildIdArchs(id);
  const missing = SASS_ARCHS.filter((a) => !archs.includes(a));
  if (missing.length > 0) return `${path} (${id}) lacks ${missing.map((a) => `sm_${a}`).join(", ")}: the package ships every architecture`;
  return null;
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function main(): number {
  if (process.platform !== "linux" || process.arch !== "x64") {
    console.error(`pack: the prebuilt library is built for linux-x64; this is ${process.platform}-${process.arch}`);
    return 1;
  }
  const env = { ...process.env };
  if (env.MLA_KV_ARCHS) {
    console.log(`pack: ignoring MLA_KV_ARCHS=${env.MLA_KV_ARCHS}: the package ships every architecture`);
    delete env.MLA_KV_ARCHS;
  }
  run(["bun", "scripts/build.ts"], env);
  const built = join(root, "build", "libmla_kv.so");
  const refusal = unshippable(built, cudaSourceHash(join(root, "cuda"))!);
  if (refusal !== null) {
    console.error(`pack: not packing: ${refusal}`);
    return 1;
  }
  mkdirSync(dirname(PREBUILT_LIBRARY), { recursive: true });
  copyFileSync(built, PREBUILT_LIBRARY);

  rmSync(join(root, "dist"), { recursive: true, force: true });
  run(["bun", "x", "tsc", "-p", "tsconfig.build.json"]);
  run(["bun", "pm", "pack"]);

  const tarball = tarballPath();
  console.log(`pack: ${tarball}: ${megabytes(statSync(tarball).size)} packed; the library ${megabytes(statSync(built).size)}`);
  return 0;
}

if (import.meta.main) process.exit(main());
