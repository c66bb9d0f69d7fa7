import { describe, expect, it } from "bun:test";
import { describeRun, runCommand } from "../helpers/commands.ts";
import { hostLibrary } from "../helpers/host_library.ts";

describe("bun run fuzz", () => {
  it("prints its help to stdout and exits 0, naming every flag and exit status", () => {
    const r = runCommand("scripts/fuzz.ts", ["--help"]);
    expect(r.exitCode, describeRun(r)).toBe(0);
    expect(r.stdout).toStartWith("Usage: bun run fuzz [--cases N] [--seed N] [--max-n N]\n");
    for (const flag of ["--cases", "--seed", "--max-n", "--help"]) expect(r.stdout).toContain(flag);
    expect(r.stdout).toContain("Exit status: 0 done; 1");
    expect(r.stderr).toBe("");
  });

  it("exits 2 with one sentence for a flag it does not know or a value that is no number", () => {
    const unknown = runCommand("scripts/fuzz.ts", ["--frobnicate"]);
    expect(unknown.exitCode, describeRun(unknown)).toBe(2);
    expect(unknown.stderr).toBe("fuzz: unknown flag --frobnicate; see --help.\n");
    const bad = runCommand("scripts/fuzz.ts", ["--cases", "many"]);
    expect(bad.exitCode, describeRun(bad)).toBe(2);
    expect(bad.stderr).toBe("fuzz: --cases and --max-n take whole numbers from 1, --seed a whole number; see --help.\n");
  });

  const host = hostLibrary();
  it.skipIf(!host)("exits 3 when the library loads but there is no GPU here", () => {
    const r = runCommand("scripts/fuzz.ts", ["--cases", "1"], { MLA_KV_LIBRARY: host!, HOST_MLA_KV_DEVICES: "0" });
    expect(r.exitCode, describeRun(r)).toBe(3);
    expect(r.stderr).toBe("fuzz: no usable NVIDIA GPU (the driver reports no GPU); the fuzzer runs on a GPU.\n");
  });
});
