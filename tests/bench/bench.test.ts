import { describe, expect, it } from "bun:test";
import { describeRun, runCommand } from "../helpers/commands.ts";

describe("bun run bench", () => {
  it("prints its help to stdout and exits 0, naming its exit statuses", () => {
    const r = runCommand("bench/bench.ts", ["--help"]);
    expect(r.exitCode, describeRun(r)).toBe(0);
    expect(r.stdout).toStartWith("Usage: bun run bench [--layout bf16|u8]...");
    expect(r.stdout).toContain("Exit status: 0 done;");
  });

  it("exits 2 with one sentence for a flag or part it does not know", () => {
    const flag = runCommand("bench/bench.ts", ["--frobnicate"]);
    expect(flag.exitCode, describeRun(flag)).toBe(2);
    expect(flag.stderr).toBe("bench: unknown flag --frobnicate; see --help.\n");
    const part = runCommand("bench/bench.ts", ["--part", "all"]);
    expect(part.exitCode, describeRun(part)).toBe(2);
    expect(part.stderr).toBe("bench: unknown --part all (core, fp8, pdl, reserved); see --help.\n");
  });
});
