import { describe, expect, it } from "bun:test";
import { expectHelp, expectUsageError } from "../helpers/commands.ts";

describe("bun run bench", () => {
  it("prints its help to stdout and exits 0, naming its exit statuses", () => {
    expect(expectHelp("bench/bench.ts", "Usage: bun run bench [--layout bf16|u8]...")).toContain("Exit status: 0 done;");
  });

  it("exits 2 with one sentence for a flag or part it does not know", () => {
    expectUsageError("bench/bench.ts", ["--frobnicate"], "bench: unknown flag --frobnicate; see --help.\n");
    expectUsageError("bench/bench.ts", ["--part", "all"], "bench: unknown --part all (core, fp8, pdl, reserved); see --help.\n");
  });
});
