/**
 * The one error type of mla-kv.
 *
 * Callers branch on `code` (a stable string) rather than on message text, which is written for
 * people and may be reworded. It lives in ffi/, the lowest TypeScript layer, because the binding
 * turns C statuses into it and everything above throws it too.
 *
 * @module
 */

/**
 * Why an mla-kv call failed.
 *
 * - `INVALID_ARGUMENT`: an argument or option is wrong; nothing was launched.
 * - `UNSUPPORTED`: the input is valid but this GPU or path cannot do it (e.g. TMA before sm_90).
 * - `NO_DEVICE`: no CUDA driver, no GPU, or the device index does not exist.
 * - `CUDA`: a CUDA runtime call failed; the message names it.
 * - `OUT_OF_RANGE_LOC`: earlier writes skipped rows whose loc was >= the cache capacity.
 * - `LIBRARY_NOT_FOUND`: libmla_kv could not be found or loaded.
 * - `ABI_MISMATCH`: the loaded libmla_kv was built for a different version of this package.
 * - `DISPOSED`: a tensor, stream, graph or event was used after it was freed or destroyed.
 * - `CAPTURE`: the operation is not allowed while (or because) a stream is being captured.
 * - `PERMISSION`: Deno was not given a permission mla-kv needs; the message names the flag.
 */
export type MlaKvErrorCode =
  | "INVALID_ARGUMENT"
  | "UNSUPPORTED"
  | "NO_DEVICE"
  | "CUDA"
  | "OUT_OF_RANGE_LOC"
  | "LIBRARY_NOT_FOUND"
  | "ABI_MISMATCH"
  | "DISPOSED"
  | "CAPTURE"
  | "PERMISSION";

/**
 * An error raised by mla-kv, with a stable `code` and, when one argument is to blame, its name.
 *
 * @example
 * ```ts
 * import { MlaKvError, setMlaKvBuffer } from "mla-kv";
 *
 * try {
 *   setMlaKvBuffer(kvBuffer, loc, kNope, kRope);
 * } catch (error) {
 *   if (error instanceof MlaKvError && error.code === "INVALID_ARGUMENT") {
 *     console.error(`bad ${error.argument}: ${error.message}`);
 *   } else {
 *     throw error;
 *   }
 * }
 * ```
 */
export class MlaKvError extends Error {
  /** Why the call failed; stable across releases. */
  readonly code: MlaKvErrorCode;
  /** The argument or option to blame (e.g. `"kRope"`, `"options.warps"`), when there is one. */
  // `declare` so that errors without one have no `argument` key at all, and print cleanly.
  declare readonly argument?: string;

  constructor(code: MlaKvErrorCode, message: string, argument?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MlaKvError";
    this.code = code;
    if (argument !== undefined) this.argument = argument;
  }
}

/** Shorthand for the most common error: `argument` is wrong, `message` says how. */
export function invalidArgument(argument: string, message: string): MlaKvError {
  return new MlaKvError("INVALID_ARGUMENT", `${argument}: ${message}`, argument);
}

/** A short, human description of any value for "expected …, got …" messages. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  const name = (value as object).constructor?.name;
  return name && name !== "Object" ? `a ${name}` : "an object";
}
