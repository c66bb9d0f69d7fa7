/**
 * Builds tests/ffi/fixtures/host_mla_kv.c, a CPU implementation of mla_kv.h, so that the whole
 * TypeScript layer can be driven across the real FFI on machines without a GPU.
 */
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";
import { MLA_KV_ABI_VERSION } from "../../ffi/abi.ts";
import { SHARED_TMPDIR_ENV } from "./temp_dirs.ts";

const source = `${PACKAGE_ROOT}/tests/ffi/fixtures/host_mla_kv.c`;
// What the fixture includes: the header, the library's argument checks, and the conversion rules
// its quantizing write shares with the kernels.
const includes = [
  `${PACKAGE_ROOT}/cuda/include/mla_kv.h`,
  `${PACKAGE_ROOT}/cuda/checks.h`,
  `${PACKAGE_ROOT}/cuda/fp8_rules.h`,
  `${PACKAGE_ROOT}/tests/ffi/fixtures/host_quantize.h`,
];
// Keyed by the content of the fixture and what it includes, so runs reuse one build, an edit to
// any of them rebuilds, and nothing piles up in the temp folder. It lives outside the test run's
// own temporary folder (tests/setup.ts), which is removed at exit.
const key = Bun.hash([source, ...includes].map((file) => readFileSync(file, "utf8")).join("\0")).toString(16);
const outDir = join(process.env[SHARED_TMPDIR_ENV] ?? tmpdir(), `mla-kv-host-lib-${key}`);
const built = new Map<number, string | undefined>();
let failure = "";

/**
 * The path of the host library reporting ABI version `abi`, compiled on first use; undefined when
 * this machine has no working C compiler (see {@link hostLibraryFailure}).
 */
export function hostLibrary(abi: number = MLA_KV_ABI_VERSION): string | undefined {
  if (built.has(abi)) return built.get(abi);
  const out = join(outDir, `libhost_mla_kv_abi${abi}.so`);
  let path: string | undefined = existsSync(out) ? out : undefined;
  if (path === undefined) {
    try {
      mkdirSync(outDir, { recursive: true });
      // Compiled under a private name and renamed, so concurrent test runs never load a half-written file.
      const partial = `${out}.${process.pid}.tmp`;
      const proc = Bun.spawnSync(
        ["cc", "-std=c11", "-shared", "-fPIC", "-O1", `-DHOST_ABI_VERSION=${abi}`, `-I${PACKAGE_ROOT}/cuda/include`, `-I${PACKAGE_ROOT}/cuda`, "-o", partial, source],
        { stdout: "pipe", stderr: "pipe" },
      );
      if (proc.exitCode === 0) {
        renameSync(partial, out);
        path = out;
      } else {
        failure = proc.stderr.toString();
      }
    } catch (error) {
      failure = String(error);
    }
  }
  built.set(abi, path);
  return path;
}

/** Why the host library could not be built ("" when it was). */
export function hostLibraryFailure(): string {
  return failure;
}
