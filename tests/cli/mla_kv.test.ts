import { describe, expect, it } from "bun:test";
import { USAGE } from "../../cli/mla_kv.ts";
import { PACKAGE_VERSION } from "../../autotune/identity.ts";
import { describeRun, runCommand } from "../helpers/commands.ts";

describe("the mla-kv command", () => {
  it("prints its usage to stdout for -h and --help and exits 0", () => {
    for (const flag of ["-h", "--help"]) {
      const r = runCommand("cli/mla_kv.ts", [flag]);
      expect(r.exitCode, describeRun(r)).toBe(0);
      expect(r.stdout).toBe(USAGE);
      expect(r.stderr).toBe("");
    }
    expect(USAGE).toContain("inspect");
    expect(USAGE).toContain("autotune");
    expect(USAGE).toContain("Exit status:");
  });

  it("prints its usage to stdout and exits 2 when no command is given", () => {
    const r = runCommand("cli/mla_kv.ts", []);
    expect(r.exitCode, describeRun(r)).toBe(2);
    expect(r.stdout).toBe(USAGE);
  });

  it("refuses an unknown command with one sentence on stderr and exit code 2", () => {
    const r = runCommand("cli/mla_kv.ts", ["bogus"]);
    expect(r.exitCode, describeRun(r)).toBe(2);
    expect(r.stderr).toBe('mla-kv: unknown command "bogus"; mla-kv --help lists the commands.\n');
    expect(r.stdout).toBe("");
  });

  it("prints the package version for --version", () => {
    const r = runCommand("cli/mla_kv.ts", ["--version"]);
    expect(r.exitCode, describeRun(r)).toBe(0);
    expect(r.stdout).toBe(`${PACKAGE_VERSION}\n`);
  });

  it("names itself in the help of its commands", () => {
    const autotune = runCommand("cli/mla_kv.ts", ["autotune", "--help"]);
    expect(autotune.exitCode, describeRun(autotune)).toBe(0);
    expect(autotune.stdout).toStartWith("Usage: mla-kv autotune [flags]\n");
    expect(autotune.stdout).toContain("  mla-kv autotune --layout bf16:512+64 --loc i64 --device 0\n");
    expect(autotune.stdout).not.toContain("bun run autotune");
    const inspect = runCommand("cli/mla_kv.ts", ["inspect", "--help"]);
    expect(inspect.exitCode, describeRun(inspect)).toBe(0);
    expect(inspect.stdout).toStartWith("Usage: mla-kv inspect [--json]\n");
  });
});
