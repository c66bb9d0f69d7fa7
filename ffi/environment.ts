/**
 * The one reader of mla-kv's switches and numbers in the environment (MLA_KV_TRACE,
 * MLA_KV_AUTOTUNE, MLA_KV_QUIET, MLA_KV_TUNE_WAIT_MS), so every variable accepts the same words.
 *
 * A value that is none of them never stops a program: it gets the default, and one warning that
 * names the variable and what it accepts. It lives in ffi/, the lowest layer, because the binding
 * reads MLA_KV_TRACE.
 *
 * @module
 */

/** Environment variables by name; process.env, or a test's own. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Where a warning line goes. */
export type Warn = (line: string) => void;

/** Where a variable is read from and where its warning goes; defaults: process.env, stderr. */
export interface EnvSource {
  env?: Env;
  warn?: Warn;
}

const ON_WORDS = ["1", "true", "yes", "on"];
const OFF_WORDS = ["0", "false", "no", "off", ""];

const toStderr: Warn = (line) => console.warn(line);
// The lines each warn function was given already: a bad value is said once, not at every read.
const said = new WeakMap<Warn, Set<string>>();

/** Gives `line` to `warn` (default: stderr) unless that function was given it before. */
export function warnOnce(line: string, warn: Warn = toStderr): void {
  let lines = said.get(warn);
  if (lines === undefined) said.set(warn, (lines = new Set()));
  if (lines.has(line)) return;
  lines.add(line);
  warn(line);
}

/**
 * A switch: on for 1, true, yes, on; off for 0, false, no, off or an empty value (any case,
 * blank space around it ignored); `fallback` when unset or anything else (with a warning).
 */
export function envFlag(name: string, fallback: boolean, source: EnvSource = {}): boolean {
  const raw = (source.env ?? process.env)[name];
  if (raw === undefined) return fallback;
  const word = raw.trim().toLowerCase();
  if (ON_WORDS.includes(word)) return true;
  if (OFF_WORDS.includes(word)) return false;
  warnOnce(
    `mla-kv: ${name}=${JSON.stringify(raw)} is neither on (${ON_WORDS.join(", ")}) nor off (${OFF_WORDS.slice(0, -1).join(", ")} or empty); ` +
      `using the default, ${fallback ? "on" : "off"}`,
    source.warn,
  );
  return fallback;
}

/** The whole numbers a variable accepts, and what it means when unset, empty or out of range. */
export interface NumberRange {
  min: number;
  max: number;
  default: number;
}

// Decimal notation only: "0x10" and "0b1" are more likely typos than intent.
const DECIMAL = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?$/i;

/** A whole number in [min, max]; the default when unset, empty, or anything else (with a warning). */
export function envNumber(name: string, range: NumberRange, source: EnvSource = {}): number {
  const raw = (source.env ?? process.env)[name];
  if (raw === undefined || raw.trim() === "") return range.default;
  const text = raw.trim();
  const value = DECIMAL.test(text) ? Number(text) : Number.NaN;
  if (Number.isInteger(value) && value >= range.min && value <= range.max) return value;
  const what = Number.isInteger(value) ? "is out of range" : "is not a whole number";
  warnOnce(
    `mla-kv: ${name}=${JSON.stringify(raw)} ${what}; expected a whole number from ${range.min} to ${range.max}; using the default, ${range.default}`,
    source.warn,
  );
  return range.default;
}
