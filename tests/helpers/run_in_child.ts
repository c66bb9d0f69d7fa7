/**
 * Runs a snippet against mod.ts in a fresh Bun process.
 *
 * The library is loaded once per process and chosen from the environment at that moment, so a
 * test that needs another library (or none) must run in its own process. A child also turns a
 * native crash into a failed test with its stderr, instead of taking the whole test run down, and
 * a hang (a blocking open, a lock never given up) into a failed test once its time is up.
 */
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";

/** An MlaKvError (or other error) thrown in the child, as plain data. */
export interface ChildError {
  name?: string;
  code?: string;
  message: string;
  argument?: string;
}

/** What the child did. */
export interface ChildResult {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** The snippet's return value (JSON round-tripped; bigints become "123n"), when it returned. */
  value?: unknown;
  /** The error the snippet threw, when it threw. */
  error?: ChildError;
  /** True when the child was killed for running past its time bound. */
  timedOut: boolean;
}

export interface ChildOptions {
  /** The child is killed after this long (default 60 s); a test of a hang asks for less. */
  timeoutMs?: number;
}

const MARKER = "@@MLA_KV_CHILD_RESULT@@";

// The variables that steer library loading; children get none of them unless a test sets them,
// so the developer's own environment cannot change a test's outcome.
const STEERING: readonly string[] = ["MLA_KV_LIBRARY", "MLA_KV_TRACE", "MLA_KV_AUTOTUNE", "HOST_MLA_KV_LOG", "HOST_MLA_KV_CC_MAJOR", "HOST_MLA_KV_MAX_ALLOC", "HOST_MLA_KV_DEVICE_COUNT"];

/** This process's environment without the variables that steer library loading, plus `env`. */
export function childEnvironment(env: Record<string, string>): Record<string, string> {
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !STEERING.includes(key)) childEnv[key] = value;
  }
  return Object.assign(childEnv, env);
}

/**
 * Runs `body` (the body of an async function; `m` is mod.ts, `root` the package root) in a new
 * process with `env` added to a clean environment, and returns what it returned or threw.
 */
export function runInChild(body: string, env: Record<string, string> = {}, options: ChildOptions = {}): ChildResult {
  const script = `
import * as m from ${JSON.stringify(`${PACKAGE_ROOT}/mod.ts`)};
const root = ${JSON.stringify(PACKAGE_ROOT)};
const print = (x) => process.stdout.write("\\n${MARKER}" + JSON.stringify(x, (_k, v) => typeof v === "bigint" ? v + "n" : v) + "\\n");
try {
  const value = await (async () => { ${body} })();
  print({ value: value === undefined ? null : value });
} catch (e) {
  print({ error: { name: e?.name, code: e?.code, message: String(e?.message ?? e), argument: e?.argument } });
}
`;
  const proc = Bun.spawnSync([process.execPath, "--eval", script], {
    cwd: PACKAGE_ROOT,
    env: childEnvironment(env),
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs ?? 60_000,
    killSignal: "SIGKILL",
  });
  const stdout = proc.stdout.toString();
  const result: ChildResult = {
    exitCode: proc.exitCode,
    signal: proc.signalCode === null || proc.signalCode === undefined ? null : String(proc.signalCode),
    stdout,
    stderr: proc.stderr.toString(),
    timedOut: proc.exitedDueToTimeout === true,
  };
  const line = stdout.split("\n").find((l) => l.startsWith(MARKER));
  if (line !== undefined) Object.assign(result, JSON.parse(line.slice(MARKER.length)));
  return result;
}

/** A readable summary of a child run, for assertion messages. */
export function describeChild(result: ChildResult): string {
  return `exit ${result.exitCode} signal ${result.signal}${result.timedOut ? " (killed: past its time bound)" : ""}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

/** What a script of the package did when run on its own (see {@link runScript}). */
export interface ScriptResult {
  code: number | null;
  /** stdout then stderr. */
  out: string;
}

/**
 * Runs the package's script `path` (relative to the package root) with Bun in a clean environment
 * (PATH and HOME, quiet tuning, and `env`), as a user would from a shell.
 */
export function runScript(path: string, args: readonly string[], env: Record<string, string>): ScriptResult {
  const proc = Bun.spawnSync([process.execPath, `${PACKAGE_ROOT}/${path}`, ...args], {
    env: { PATH: process.env.PATH!, HOME: process.env.HOME!, MLA_KV_QUIET: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: proc.exitCode, out: proc.stdout.toString() + proc.stderr.toString() };
}
