#!/usr/bin/env bun
/**
 * `bun run pack`: the publishable tarball. Builds the fat library (unless build/ has one of these
 * sources already), places it at prebuilt/linux-x64/libmla_kv.so, and runs `bun pm pack`, so that
 * `bun add mla-kv-<version>.tgz` needs no CUDA toolkit: only an NVIDIA driver (R580+ for the CUDA
 * 13.0 runtime linked in).
 */
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const run = (args: string[]) => {
  const p = Bun.spawnSync(args, { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} failed with exit ${p.exitCode}`);
};

if (process.platform !== "linux" || process.arch !== "x64") {
  console.error(`pack: the prebuilt library is built for linux-x64; this is ${process.platform}-${process.arch}`);
  process.exit(1);
}
const built = join(root, "build", "libmla_kv.so");
if (!existsSync(built) || process.env.MLA_KV_ARCHS) run(["bun", "scripts/build.ts"]);
const dir = join(root, "prebuilt", "linux-x64");
mkdirSync(dir, { recursive: true });
copyFileSync(built, join(dir, "libmla_kv.so"));
// dist/: the modules compiled to JavaScript with their .d.ts, which Deno loads from node_modules
// (it does not strip types there); Bun loads the TypeScript sources (package.json "exports").
rmSync(join(root, "dist"), { recursive: true, force: true });
run(["bun", "x", "tsc", "-p", "tsconfig.build.json"]);
run(["bun", "pm", "pack"]);
