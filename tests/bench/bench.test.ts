/** `bun run bench` where it cannot run: its help and usage errors, exit 3 with the cause for no usable GPU, 1 for anything else. */
import { describe, expect, it } from "bun:test";
import { expectHelp, expectUsageError } from "../helpers/commands.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { runScript } from "../helpers/run_in_child.ts";

describe("bun run bench", () => {
  it("prints its help to stdout and exits 0, naming its exit statuses", () => {
    expect(expectHelp("bench/bench.ts", "Usage: bun run bench [--layout bf16|u8]...")).toContain("Exit status: 0 done;");
  });

  it("exits 2 with one sentence for a flag or part it does not know", () => {
    expectUsageError("bench/bench.ts", ["--frobnicate"], "bench: unknown flag --frobnicate; see --help.\n");
    expectUsageError("bench/bench.ts", ["--part", "all"], "bench: unknown --part all (core, fp8, pdl, reserved); see --help.\n");
  });
});

const bench = (env: Record<string, string>) => runScript("bench/bench.ts", ["--quick"], env);

const host = hostLibrary();
describe.skipIf(!host)(`the benchmark without a usable GPU${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("exits 3 and names the old driver and the one needed", () => {
    const run = bench({ MLA_KV_LIBRARY: host!, HOST_MLA_KV_DRIVER_VERSION: "11080" });
    expect(run.code, run.out).toBe(3);
    expect(run.out).toContain("bench: no usable NVIDIA GPU here: mla_kv_device_count failed: the NVIDIA driver (CUDA 11.8) is older than the CUDA 12.8 runtime");
  });

  it("exits 1 when the library is missing", () => {
    const run = bench({ MLA_KV_LIBRARY: "/nonexistent/libmla_kv.so" });
    expect(run.code, run.out).toBe(1);
    expect(run.out).toContain("bench: cannot start: LIBRARY_NOT_FOUND: ");
  });
});
