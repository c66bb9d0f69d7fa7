#!/usr/bin/env bun
/**
 * Proves the published package works without a CUDA toolkit: installs mla-kv-<version>.tgz (from
 * `bun run pack`) into a fresh temporary project, then runs a consumer script that imports
 * "mla-kv" with nvcc off the PATH. It checks that the library came from the package's prebuilt/
 * folder. On a GPU it writes rows and checks every byte; without one it expects the clear
 * NO_DEVICE error.
 *
 *   bun scripts/check_package.ts                      install with `bun add` (needs the npm registry)
 *   bun scripts/check_package.ts --deps node_modules  no registry: unpack the tarball and copy its
 *                                                     dependencies from that folder (GPU machine)
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const root = resolve(import.meta.dir, "..");
const { values } = parseArgs({ options: { deps: { type: "string" } }, strict: true });
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version as string;
const tarball = join(root, `mla-kv-${version}.tgz`);
if (!existsSync(tarball)) {
  console.error(`check_package: ${tarball} is missing; run \`bun run pack\` first`);
  process.exit(1);
}

const project = mkdtempSync(join(tmpdir(), "mla-kv-consumer-"));
writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
const sh = (args: string[], env: Record<string, string | undefined> = process.env) => {
  const p = Bun.spawnSync(args, { cwd: project, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};
if (values.deps) {
  const modules = join(project, "node_modules");
  mkdirSync(join(modules, "mla-kv"), { recursive: true });
  const untar = sh(["tar", "xzf", tarball, "--strip-components", "1", "-C", join(modules, "mla-kv")]);
  if (untar.code !== 0) throw new Error(`tar: ${untar.err}`);
  const deps = Object.keys(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).dependencies ?? {});
  for (const dep of deps) cpSync(join(resolve(values.deps), dep), join(modules, dep), { recursive: true });
} else {
  const add = sh(["bun", "add", tarball]);
  if (add.code !== 0) throw new Error(`bun add failed:\n${add.out}${add.err}`);
}

writeFileSync(join(project, "consumer.ts"), `
import { allocTensor, deviceCount, fromHost, libraryInfo, MlaKvError, setMlaKvBuffer, Stream } from "mla-kv";
const library = libraryInfo().path;
let gpus = 0;
try { gpus = deviceCount(); } catch (e) {
  if (!(e instanceof MlaKvError) || e.code !== "NO_DEVICE") throw e;
  console.log(JSON.stringify({ library, gpu: false, message: e.message.split("\\n")[0] }));
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
console.log(JSON.stringify({ library, gpu: true, bytes: got.length * 2, wrong: got.filter((v, i) => v !== want[i]).length }));
`);

// Only the folder bun lives in and the system folders: no CUDA toolkit, no nvcc.
const path = [dirname(process.execPath), "/usr/bin", "/bin"].filter((p) => !existsSync(join(p, "nvcc"))).join(":");
const env = { PATH: path, HOME: process.env.HOME, MLA_KV_CACHE_DIR: join(project, "cache"), MLA_KV_QUIET: "1" };
const nvcc = sh(["sh", "-c", "command -v nvcc"], env);
const run = sh([process.execPath, "consumer.ts"], env);
let result: { library: string; gpu: boolean; message?: string; bytes?: number; wrong?: number };
try {
  result = JSON.parse(run.out.trim().split("\n").pop() ?? "");
} catch {
  console.error(`check_package: the consumer failed (exit ${run.code}):\n${run.out}${run.err}`);
  process.exit(1);
}
const fromPrebuilt = result.library.includes(join("node_modules", "mla-kv", "prebuilt", "linux-x64"));
const ok = nvcc.code !== 0 && fromPrebuilt && (result.gpu ? result.wrong === 0 : /NO_DEVICE|driver|GPU/.test(result.message ?? ""));
console.log(`check_package: installed ${values.deps ? "by unpacking" : "with bun add"} into ${project}; nvcc on PATH: ${nvcc.code === 0 ? "yes (!)" : "no"}`);
console.log(`check_package: library ${result.library} (${fromPrebuilt ? "the package's prebuilt" : "NOT the prebuilt"})`);
console.log(result.gpu
  ? `check_package: wrote on the GPU and checked ${result.bytes} bytes: ${result.wrong} wrong`
  : `check_package: no GPU, as expected here: ${result.message}`);
console.log(`check_package: ${ok ? "ok" : "FAILED"}`);
process.exit(ok ? 0 : 1);
