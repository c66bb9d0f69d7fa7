/**
 * `bun run build` against a fake nvcc, in a copy of the package (so the real build/ is never
 * touched): what it builds for MLA_KV_ARCHS, that an up-to-date library is kept, that nvcc's
 * output goes to build/nvcc.log with one line on the terminal, and that a failure shows its errors.
 */
import { describe, expect, it } from "bun:test";
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { embeddedBuildId } from "../../ffi/build_id.ts";
import { PACKAGE_ROOT } from "../../ffi/package_root.ts";
import { cudaSourceHash } from "../../ffi/source_hash.ts";
import { archOfComputeCapability, buildTargets, logSummary, PTX_ARCH, SASS_ARCHS } from "../../scripts/build.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-build-");

describe("buildTargets", () => {
  it("builds every architecture and the PTX when MLA_KV_ARCHS is unset or empty", () => {
    expect(buildTargets(undefined)).toEqual({ archs: [...SASS_ARCHS], ptx: PTX_ARCH });
    expect(buildTargets(" ")).toEqual({ archs: [...SASS_ARCHS], ptx: PTX_ARCH });
  });

  it("builds the listed architectures, in order and once each, without PTX", () => {
    expect(buildTargets("90a, 80,90a")).toEqual({ archs: ["80", "90a"], ptx: null });
  });

  it("gives the full list the PTX however it is asked for, so one id means one library", () => {
    expect(buildTargets([...SASS_ARCHS].reverse().join(","))).toEqual({ archs: [...SASS_ARCHS], ptx: PTX_ARCH });
  });

  it("builds this machine's GPUs for native, each once", () => {
    const targets = buildTargets("native", () => ["9.0", "8.6", "9.0"]);
    expect(targets.archs).toEqual(["86", "90a"]);
    expect(targets.ptx).toBeNull();
    expect(targets.note).toBe("MLA_KV_ARCHS=native: this machine's GPUs are compute capability 9.0, 8.6");
  });

  it("falls back to every architecture, saying why, when native finds no GPU", () => {
    expect(buildTargets("native", () => ({ error: "nvidia-smi is not installed" }))).toEqual({
      archs: [...SASS_ARCHS],
      ptx: PTX_ARCH,
      note: "MLA_KV_ARCHS=native: no GPU found here (nvidia-smi is not installed); building every architecture",
    });
    expect(buildTargets("native", () => []).note).toContain("(nvidia-smi lists no GPU)");
  });

  it("maps a compute capability to the list's arch-specific variant where it has one", () => {
    expect(["7.5", "9.0", "10.0", "10.3", "12.0", "8.7"].map(archOfComputeCapability)).toEqual(["75", "90a", "100a", "103a", "120", "87"]);
    expect(archOfComputeCapability("N/A")).toBeNull();
  });
});

describe("logSummary", () => {
  it("counts ptxas's spill warnings and the other warnings, and names the log", () => {
    const log = [
      "ptxas warning : Registers are spilled to local memory in function 'a', 20 bytes spill stores, 24 bytes spill loads",
      "ptxas warning : Registers are spilled to local memory in function 'b', 8 bytes spill stores, 8 bytes spill loads",
      "capi.cu(10): warning #177-D: variable \"x\" was declared but never referenced",
    ].join("\n");
    expect(logSummary(log, "build/nvcc.log")).toBe("ptxas: 2 functions spill registers, 1 other warning; nvcc's whole output is in build/nvcc.log");
    expect(logSummary("", "l")).toBe("ptxas: 0 functions spill registers, 0 other warnings; nvcc's whole output is in l");
  });
});

// A stand-in for nvcc: writes a "library" holding the build id it was given, as the real one
// embeds it, logs each call, prints a spill warning like ptxas, and fails when asked to.
const FAKE_NVCC = `#!/bin/sh
echo "$@" >> "$FAKE_NVCC_CALLS"
[ -n "$FAKE_NVCC_FAIL" ] && { echo "capi.cu(3): error: expected a ';'" >&2; exit 2; }
out=""; id=""; prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out="$a"
  case "$a" in -DMLA_KV_BUILD_ID=*) id=$(echo "$a" | sed 's/^-DMLA_KV_BUILD_ID=//; s/"//g');; esac
  prev="$a"
done
printf 'ELF\\0%s\\0' "$id" > "$out"
echo "ptxas warning : Registers are spilled to local memory in function 'k', 4 bytes spill stores, 4 bytes spill loads" >&2
`;

/** A copy of the package's build script, ffi/ and cuda/, and a fake nvcc. */
function sandbox() {
  const root = freshDir();
  for (const dir of ["ffi", "cuda"]) cpSync(join(PACKAGE_ROOT, dir), join(root, dir), { recursive: true });
  mkdirSync(join(root, "scripts"));
  cpSync(join(PACKAGE_ROOT, "scripts", "build.ts"), join(root, "scripts", "build.ts"));
  const nvcc = join(root, "fake-nvcc");
  writeFileSync(nvcc, FAKE_NVCC);
  chmodSync(nvcc, 0o755);
  const calls = join(root, "calls.log");
  const build = (env: Record<string, string> = {}, args: string[] = []) => {
    const p = Bun.spawnSync([process.execPath, join(root, "scripts", "build.ts"), ...args], {
      cwd: root,
      env: { PATH: process.env.PATH!, NVCC: nvcc, FAKE_NVCC_CALLS: calls, ...env },
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
  };
  const nvccCalls = () => (existsSync(calls) ? readFileSync(calls, "utf8").trim().split("\n").length : 0);
  const library = join(root, "build", "libmla_kv.so");
  return { root, build, nvccCalls, library, hash: () => cudaSourceHash(join(root, "cuda"))! };
}

/** A PATH whose first folder holds an nvidia-smi running the shell `body`. */
function withFakeNvidiaSmi(root: string, body: string): string {
  const bin = join(root, "bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "nvidia-smi"), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, "nvidia-smi"), 0o755);
  return `${bin}:${process.env.PATH}`;
}

describe("bun run build", () => {
  it("says what it builds and how long that takes, and names MLA_KV_ARCHS=native", () => {
    const s = sandbox();
    const run = s.build();
    expect(run.code, run.err).toBe(0);
    expect(run.out).toContain("build: nvcc for sm_75, sm_80, sm_86, sm_89, sm_90a, sm_100a, sm_103a, sm_120 + compute_120 PTX: about 6-7 minutes on 2 cores for all 8 architectures; MLA_KV_ARCHS=native builds only this machine's GPUs");
    expect(embeddedBuildId(s.library, s.hash())).toBe(`${s.hash()}-${SASS_ARCHS.join(".")}`);
  });

  it("keeps ptxas's report out of the terminal, in build/nvcc.log, with a one-line summary", () => {
    const s = sandbox();
    const run = s.build({ MLA_KV_ARCHS: "90a" });
    expect(run.code, run.err).toBe(0);
    expect(run.out + run.err).not.toContain("ptxas warning");
    expect(run.out).toContain("build: ptxas: 1 function spills registers, 0 other warnings; nvcc's whole output is in build/nvcc.log");
    expect(readFileSync(join(s.root, "build", "nvcc.log"), "utf8")).toContain("ptxas warning : Registers are spilled to local memory in function 'k'");
  });

  it("keeps an up-to-date library, also after a comment edit, and rebuilds for other architectures or --force", () => {
    const s = sandbox();
    expect(s.build({ MLA_KV_ARCHS: "90a" }).code).toBe(0);
    const again = s.build({ MLA_KV_ARCHS: "90a" });
    expect(again.out).toContain(`build: build/libmla_kv.so is up to date (${s.hash()}-90a); --force rebuilds it`);
    expect(s.nvccCalls()).toBe(1);

    writeFileSync(join(s.root, "cuda", "common.cuh"), `// a new comment\n${readFileSync(join(s.root, "cuda", "common.cuh"), "utf8")}`);
    expect(s.build({ MLA_KV_ARCHS: "90a" }).out).toContain("is up to date");
    expect(s.nvccCalls()).toBe(1);

    expect(s.build({ MLA_KV_ARCHS: "80" }).out).toContain("build: nvcc for sm_80");
    expect(s.nvccCalls()).toBe(2);
    expect(s.build({ MLA_KV_ARCHS: "80" }, ["--force"]).out).toContain("build: nvcc for sm_80");
    expect(s.nvccCalls()).toBe(3);
  });

  it("rebuilds a library of other sources", () => {
    const s = sandbox();
    expect(s.build({ MLA_KV_ARCHS: "90a" }).code).toBe(0);
    writeFileSync(join(s.root, "cuda", "common.cuh"), `${readFileSync(join(s.root, "cuda", "common.cuh"), "utf8")}\nstatic int changed = 1;\n`);
    expect(s.build({ MLA_KV_ARCHS: "90a" }).out).toContain("build: nvcc for sm_90a");
    expect(embeddedBuildId(s.library, s.hash())).toBe(`${s.hash()}-90a`);
  });

  it("builds every architecture, saying so, for MLA_KV_ARCHS=native where nvidia-smi finds no GPU", () => {
    const s = sandbox();
    const path = withFakeNvidiaSmi(s.root, "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9");
    const run = s.build({ MLA_KV_ARCHS: "native", PATH: path });
    expect(run.out).toContain("build: MLA_KV_ARCHS=native: no GPU found here (nvidia-smi exited 9: NVIDIA-SMI has failed");
    expect(run.out).toContain("building every architecture");
    expect(embeddedBuildId(s.library, s.hash())).toBe(`${s.hash()}-${SASS_ARCHS.join(".")}`);
  });

  it("builds the GPUs nvidia-smi lists for MLA_KV_ARCHS=native", () => {
    const s = sandbox();
    const run = s.build({ MLA_KV_ARCHS: "native", PATH: withFakeNvidiaSmi(s.root, "printf '9.0\\n12.0\\n'") });
    expect(run.out).toContain("build: nvcc for sm_90a, sm_120: about 45 s an architecture on 2 cores");
    expect(embeddedBuildId(s.library, s.hash())).toBe(`${s.hash()}-90a.120`);
  });

  it("shows nvcc's errors and the log when it fails, and leaves no library", () => {
    const s = sandbox();
    const run = s.build({ MLA_KV_ARCHS: "90a", FAKE_NVCC_FAIL: "1" });
    expect(run.code).toBe(2);
    expect(run.err).toContain("build: nvcc failed (exit 2); the whole output is in build/nvcc.log:\n  capi.cu(3): error: expected a ';'");
    expect(existsSync(s.library)).toBe(false);
  });

  it("documents MLA_KV_ARCHS and its native value in --help", () => {
    const run = sandbox().build({}, ["--help"]);
    expect(run.code).toBe(0);
    expect(run.out).toContain("MLA_KV_ARCHS   the SASS architectures to build");
    expect(run.out).toContain("native: the GPUs of this machine (nvidia-smi), or all when it finds none");
  });
});
