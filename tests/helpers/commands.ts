/**
 * Runs one of the package's commands (`bun <file> args…`) from the package root, as a user would,
 * in a process killed after 30 s, with the variables that steer library loading taken out of the
 * environment unless a test sets them.
 */
import { expect } from "bun:test";
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";
import { childEnvironment } from "./run_in_child.ts";

export interface CommandResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export function runCommand(file: string, args: readonly string[], env: Record<string, string> = {}): CommandResult {
  const proc = Bun.spawnSync([process.execPath, file, ...args], {
    cwd: PACKAGE_ROOT,
    env: childEnvironment(env),
    stdout: "pipe",
    stderr: "pipe",
    timeout: 30_000,
    killSignal: "SIGKILL",
  });
  return { exitCode: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

/** A readable summary of a command's run, for assertion messages. */
export function describeRun(r: CommandResult): string {
  return `exit ${r.exitCode}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** Runs `file --help` (or `args`): help on stdout, starting with `usage`, nothing on stderr, status 0; returns the help. */
export function expectHelp(file: string, usage: string, args: readonly string[] = ["--help"]): string {
  const r = runCommand(file, args);
  expect(r.exitCode, describeRun(r)).toBe(0);
  expect(r.stdout).toStartWith(usage);
  expect(r.stderr).toBe("");
  return r.stdout;
}

/** Runs `file args…` and expects status 2 with exactly `sentence` on stderr and nothing on stdout. */
export function expectUsageError(file: string, args: readonly string[], sentence: string): void {
  const r = runCommand(file, args);
  expect(r.exitCode, describeRun(r)).toBe(2);
  expect(r.stderr).toBe(sentence);
  expect(r.stdout).toBe("");
}
