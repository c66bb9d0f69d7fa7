import { describe, expect, it } from "bun:test";
import { describeRun, expectHelp, expectUsageError, runCommand } from "../helpers/commands.ts";
import { hostLibrary } from "../helpers/host_library.ts";

describe("bun run fuzz", () => {
  it("prints its help to stdout and exits 0, naming every flag and exit status", () => {
    const help = expectHelp("scripts/fuzz.ts", "Usage: bun run fuzz [--cases N] [--seed N] [--max-n N]\n");
    for (const flag of ["--cases", "--seed", "--max-n", "--help"]) expect(help).toContain(flag);
    expect(help).toContain("Exit status: 0 done; 1");
  });

  it("exits 2 with one sentence for a flag it does not know or a value that is no number", () => {
    expectUsageError("scripts/fuzz.ts", ["--frobnicate"], "fuzz: unknown flag --frobnicate; see --help.\n");
    expectUsageError("scripts/fuzz.ts", ["--cases", "many"], "fuzz: --cases and --max-n take whole numbers from 1, --seed a whole number; see --help.\n");
  });

  const host = hostLibrary();
  it.skipIf(!host)("exits 3 when the library loads but there is no GPU here", () => {
    const r = runCommand("scripts/fuzz.ts", ["--cases", "1"], { MLA_KV_LIBRARY: host!, HOST_MLA_KV_DEVICE_COUNT: "0" });
    expect(r.exitCode, describeRun(r)).toBe(3);
    expect(r.stderr).toStartWith("fuzz: no usable NVIDIA GPU here: the NVIDIA driver (CUDA 13.0) is installed but sees no GPU");
  });
});
