#!/usr/bin/env bun
/**
 * Proves the published package works without a CUDA toolkit, under Bun and under Deno: installs
 * mla-kv-<version>.tgz (from `bun run pack`) into a fresh temporary project, then runs a consumer
 * script that imports "mla-kv" with nvcc off the PATH, once with Bun (which loads the package's
 * TypeScript) and once with Deno (which loads its compiled dist/, after type-checking the
 * consumer against the shipped .d.ts). Each run must load the package's prebuilt library; on a GPU
 * it writes rows and checks every byte, without one it expects the NO_DEVICE error with its cause.
 * Deno without --allow-ffi must name that flag. The temporary project is deleted afterwards.
 *
 *   bun scripts/check_package.ts                      install with `bun add` (needs the npm registry)
 *   bun scripts/check_package.ts --deps node_modules  no registry: unpack the tarball and copy its
 *                                                     dependencies from that folder (GPU machine)
 *   --keep                                            leave the temporary project for inspection
 *
 * Deno is the `deno` on the PATH, or $DENO; without either only Bun is checked, and that fails.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { tarballPath } from "./pack.ts";

const root = resolve(import.meta.dir, "..");
const { values } = parseArgs({ options: { deps: { type: "string" }, keep: { type: "boolean", default: false } }, strict: true });
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const tarball = tarballPath();
if (!existsSync(tarball)) {
  console.error(`check_package: ${tarball} is missing; run \`bun run pack\` first`);
  process.exit(1);
}

/** What the consumer prints, as one JSON line. */
interface ConsumerResult {
  /** The code of the error libraryInfo() threw, when it threw. */
  failure?: string;
  library: string;
  reason: string;
  gpu: boolean;
  code?: string;
  message?: string;
  bytes?: number;
  wrong?: number;
}

const CONSUMER = `
import { allocTensor, fromHost, gpuProblem, libraryInfo, MlaKvError, setMlaKvBuffer, Stream } from "mla-kv";
let info;
try {
  info = libraryInfo();
} catch (error) {
  const e = error as MlaKvError;
  console.log(JSON.stringify({ failure: e.code, message: e.message }));
  process.exit(0);
}
const { path: library, reason } = info;
const problem: MlaKvError | null = gpuProblem(0);
if (problem !== null) {
  console.log(JSON.stringify({ library, reason, gpu: false, code: problem.code, message: problem.message }));
  process.exit(0);
}
const n = 257, cap = 1024;
const nope = new Uint16Array(n * 512).map((_, i) => (i * 40503) & 0xffff | 1);
const rope = new Uint16Array(n * 64).map((_, i) => (i * 2654435761) >>> 16 | 1);
const slots = Array.from({ length: n }, (_, i) => (i * 389) % cap);
using stream = Stream.create();
using cache = allocTensor("bf16", [cap, 576]);
const want = new Uint16Array(cap * 576).fill(0xdead);
cache.upload(want, { stream });
using kNope = fromHost(nope, "bf16", [n, 512], { stream });
using kRope = fromHost(rope, "bf16", [n, 64], { stream });
using loc = fromHost(Int32Array.from(slots), "i32", [n], { stream });
setMlaKvBuffer(cache, loc, kNope, kRope, { stream });
stream.synchronize();
slots.forEach((s, i) => { want.set(nope.subarray(i * 512, i * 512 + 512), s * 576); want.set(rope.subarray(i * 64, i * 64 + 64), s * 576 + 512); });
const got = cache.download({ stream });
console.log(JSON.stringify({ library, reason, gpu: true, bytes: got.length * 2, wrong: got.filter((v, i) => v !== want[i]).length }));
`;

const project = mkdtempSync(join(tmpdir(), "mla-kv-consumer-"));
let failed = false;
try {
  failed = !check(project);
} catch (error) {
  console.error(`check_package: ${error instanceof Error ? error.message : String(error)}`);
  failed = true;
} finally {
  if (values.keep) console.log(`check_package: kept ${project}`);
  else rmSync(project, { recursive: true, force: true });
}
console.log(`check_package: ${failed ? "FAILED" : "ok"}`);
process.exit(failed ? 1 : 0);

function sh(args: string[], cwd: string, env: Record<string, string | undefined> = process.env) {
  const p = Bun.spawnSync(args, { cwd, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

function install(project: string): void {
  if (values.deps) {
    // What `bun add` would leave: the package and its dependencies in node_modules, and the
    // project's package.json naming it (Deno resolves "mla-kv" through that).
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module", dependencies: { "mla-kv": manifest.version, ...manifest.dependencies } }));
    const modules = join(project, "node_modules");
    mkdirSync(join(modules, "mla-kv"), { recursive: true });
    const untar = sh(["tar", "xzf", tarball, "--strip-components", "1", "-C", join(modules, "mla-kv")], project);
    if (untar.code !== 0) throw new Error(`tar: ${untar.err}`);
    for (const dep of Object.keys(manifest.dependencies ?? {})) cpSync(join(resolve(values.deps), dep), join(modules, dep), { recursive: true });
  } else {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    const add = sh(["bun", "add", tarball], project);
    if (add.code !== 0) throw new Error(`bun add failed:\n${add.out}${add.err}`);
  }
}

function denoBinary(): string | null {
  const named = process.env.DENO ?? Bun.which("deno");
  return named ? realpathSync(named) : null;
}

/** Runs the consumer; the result, or why there is none. */
function consume(label: string, args: string[], cwd: string, env: Record<string, string | undefined>): ConsumerResult | string {
  const run = sh(args, cwd, env);
  try {
    return JSON.parse(run.out.trim().split("\n").pop() ?? "") as ConsumerResult;
  } catch {
    return `the consumer under ${label} failed (exit ${run.code}):\n${run.out}${run.err}`;
  }
}

function judge(label: string, result: ConsumerResult | string): boolean {
  if (typeof result === "string") {
    console.error(`check_package: ${result}`);
    return false;
  }
  if (result.failure !== undefined) {
    console.error(`check_package: ${label}: the library did not load: ${result.failure}: ${result.message}`);
    return false;
  }
  const fromPrebuilt = result.library.includes(join("node_modules", "mla-kv", "prebuilt", "linux-x64"));
  const ok = fromPrebuilt && (result.gpu ? result.wrong === 0 : result.code === "NO_DEVICE" && /driver|GPU/.test(result.message ?? ""));
  console.log(`check_package: ${label}: library ${result.library} (${fromPrebuilt ? "the package's prebuilt" : "NOT the prebuilt"}): ${result.reason}`);
  console.log(result.gpu
    ? `check_package: ${label}: wrote on the GPU and checked ${result.bytes} bytes: ${result.wrong} wrong`
    : `check_package: ${label}: no GPU, as expected here: ${result.code}: ${result.message}`);
  return ok;
}

function check(project: string): boolean {
  install(project);
  writeFileSync(join(project, "consumer.ts"), CONSUMER);
  // Only the folders bun and deno live in and the system folders: no CUDA toolkit, no nvcc.
  const deno = denoBinary();
  const folders = [dirname(process.execPath), ...(deno ? [dirname(deno)] : []), "/usr/bin", "/bin"];
  const path = [...new Set(folders)].filter((p) => !existsSync(join(p, "nvcc"))).join(":");
  const env = { PATH: path, HOME: process.env.HOME, MLA_KV_CACHE_DIR: join(project, "cache"), MLA_KV_QUIET: "1", DENO_DIR: join(project, ".deno"), NO_COLOR: "1" };
  const nvcc = sh(["sh", "-c", "command -v nvcc"], project, env);
  console.log(`check_package: installed ${values.deps ? "by unpacking" : "with bun add"} into ${project}; nvcc on PATH: ${nvcc.code === 0 ? "yes (!)" : "no"}`);
  let ok = nvcc.code !== 0;

  ok = judge("bun", consume("Bun", [process.execPath, "consumer.ts"], project, env)) && ok;

  if (deno === null) {
    console.error("check_package: deno: not found (put it on the PATH or set DENO); the Deno half is not checked");
    return false;
  }
  // Deno reads the project's package.json and node_modules as `bun add` left them, and the
  // types the package ships: a type error in dist/*.d.ts fails here.
  const typed = sh([deno, "check", "consumer.ts"], project, env);
  if (typed.code !== 0) {
    console.error(`check_package: deno: the consumer does not type-check against the package's .d.ts:\n${typed.out}${typed.err}`);
    ok = false;
  } else {
    console.log("check_package: deno: the consumer type-checks against dist/*.d.ts");
  }
  const flags = ["--allow-ffi", "--allow-read", "--allow-env", "--allow-write", "--allow-sys"];
  ok = judge("deno", consume("Deno", [deno, "run", ...flags, "consumer.ts"], project, env)) && ok;

  const denied = consume("Deno without --allow-ffi", [deno, "run", ...flags.filter((f) => f !== "--allow-ffi"), "consumer.ts"], project, env);
  const named = typeof denied !== "string" && denied.failure === "PERMISSION" && /run deno with --allow-ffi/.test(denied.message ?? "") &&
    !/bun run build/.test(denied.message ?? "");
  console.log(`check_package: deno without --allow-ffi: ${named ? "PERMISSION, naming --allow-ffi" : `UNEXPECTED: ${JSON.stringify(denied)}`}`);
  return ok && named;
}
