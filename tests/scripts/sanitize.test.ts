import { describe, expect, it } from "bun:test";
import { expectHelp, expectUsageError } from "../helpers/commands.ts";

describe("bun run sanitize", () => {
  it("prints its help to stdout and exits 0, naming its exit statuses", () => {
    expect(expectHelp("scripts/sanitize.ts", "Usage: bun run sanitize\n")).toContain("Exit status: 0 clean;");
  });

  it("exits 2 with one sentence for a flag it does not know", () => {
    expectUsageError("scripts/sanitize.ts", ["--frobnicate"], "sanitize: unknown flag --frobnicate; see --help.\n");
  });
});
