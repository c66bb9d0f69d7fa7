import { describe, expect, it } from "bun:test";
import { USAGE } from "../../cli/mla_kv.ts";
import { PACKAGE_VERSION } from "../../ffi/package_root.ts";
import { describeRun, expectHelp, expectUsageError, runCommand } from "../helpers/commands.ts";

describe("the mla-kv command", () => {
  it("prints its usage to stdout for -h and --help and exits 0", () => {
    for (const flag of ["-h", "--help"]) expect(expectHelp("cli/mla_kv.ts", "Usage: mla-kv <command> [flags]\n", [flag])).toBe(USAGE);
    for (const word of ["inspect", "autotune", "--version", "Exit status:"]) expect(USAGE).toContain(word);
  });

  it("prints its usage to stdout and exits 2 when no command is given", () => {
    const r = runCommand("cli/mla_kv.ts", []);
    expect(r.exitCode, describeRun(r)).toBe(2);
    expect(r.stdout).toBe(USAGE);
  });

  it("refuses an unknown command with one sentence on stderr and exit code 2", () => {
    expectUsageError("cli/mla_kv.ts", ["bogus"], 'mla-kv: unknown command "bogus"; mla-kv --help lists the commands.\n');
  });

  it("prints the package version for --version", () => {
    expect(expectHelp("cli/mla_kv.ts", PACKAGE_VERSION, ["--version"])).toBe(`${PACKAGE_VERSION}\n`);
  });

  it("names itself in the help of its commands", () => {
    const autotune = expectHelp("cli/mla_kv.ts", "Usage: mla-kv autotune [flags]\n", ["autotune", "--help"]);
    expect(autotune).toContain("  mla-kv autotune --layout bf16:512+64 --loc i64 --device 0\n");
    expect(autotune).not.toContain("bun run autotune");
    expectHelp("cli/mla_kv.ts", "Usage: mla-kv inspect [--json]\n", ["inspect", "--help"]);
  });
});
