import { describe, expect, it } from "bun:test";
import { describeRun, runCommand } from "../helpers/commands.ts";

describe("bun run sanitize", () => {
  it("prints its help to stdout and exits 0, naming its exit statuses", () => {
    const r = runCommand("scripts/sanitize.ts", ["--help"]);
    expect(r.exitCode, describeRun(r)).toBe(0);
    expect(r.stdout).toStartWith("Usage: bun run sanitize\n");
    expect(r.stdout).toContain("Exit status: 0 clean;");
  });

  it("exits 2 with one sentence for a flag it does not know", () => {
    const r = runCommand("scripts/sanitize.ts", ["--frobnicate"]);
    expect(r.exitCode, describeRun(r)).toBe(2);
    expect(r.stderr).toBe("sanitize: unknown flag --frobnicate; see --help.\n");
  });
});
