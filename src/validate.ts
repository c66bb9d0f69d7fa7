/**
 * Checks for single arguments, shared by every public function.
 *
 * Each check throws `MlaKvError("INVALID_ARGUMENT")` naming the argument and saying what was
 * expected and what was got, because a bad size or pointer that reaches the GPU shows up later
 * as a corrupt cache or an illegal-address fault that no longer points at its cause.
 *
 * @module
 */

import { DTYPES, isDType, type DType } from "./dtypes.ts";
import { describeValue, invalidArgument } from "../ffi/errors.ts";
import { REQUESTED_FORMATS, type RequestedFormat } from "./vocabulary.ts";

/** The largest device index the C ABI can carry (int32). */
const MAX_DEVICE = 0x7fffffff;

/**
 * describeValue for an argument that must be a number: a bigint, the one likely mistake (sizes
 * read from another library often are), says so.
 */
export function describeNumber(value: unknown): string {
  return typeof value === "bigint" ? `${value}n (a bigint; pass a number)` : describeValue(value);
}

/** An array of dimensions or strides as the caller wrote it, bigints marked: [4n, 512]. */
function listText(values: readonly unknown[]): string {
  return `[${values.map((v) => (typeof v === "bigint" ? `${v}n` : String(v))).join(", ")}]`;
}

/** Accepts a CUDA device index: an integer in [0, 2^31). */
export function validateDevice(value: unknown, argument: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_DEVICE) {
    throw invalidArgument(argument, `expected a device index (an integer >= 0), got ${describeNumber(value)}`);
  }
  return value;
}

/** Accepts a dtype name. */
export function validateDType(value: unknown, argument: string): DType {
  if (!isDType(value)) {
    throw invalidArgument(argument, `expected one of ${Object.keys(DTYPES).join(", ")}, got ${describeValue(value)}`);
  }
  return value;
}

/**
 * Accepts a shape: a non-empty array of safe integers, each >= 1 (or >= 0 with `allowEmpty`),
 * whose element count is a safe integer. Returns a frozen copy so later mutation of the
 * caller's array cannot change a tensor behind its back.
 */
export function validateShape(value: unknown, argument: string, allowEmpty: boolean): readonly number[] {
  const minimum = allowEmpty ? 0 : 1;
  const expected = `expected a non-empty array of integers >= ${minimum}`;
  if (!Array.isArray(value) || value.length === 0) {
    throw invalidArgument(argument, `${expected}, got ${describeValue(value)}`);
  }
  let count = 1;
  for (let i = 0; i < value.length; i++) {
    const dim: unknown = value[i];
    if (typeof dim !== "number" || !Number.isSafeInteger(dim) || dim < minimum) {
      throw invalidArgument(argument, `${expected}, got ${describeNumber(dim)} at index ${i} of ${listText(value)}`);
    }
    count *= dim;
  }
  if (!Number.isSafeInteger(count)) {
    throw invalidArgument(argument, `expected at most 2^53 - 1 elements, got shape [${value.join(", ")}]`);
  }
  return Object.freeze([...(value as number[])]);
}

/** Accepts strides in elements: one non-negative safe integer per dimension of `shape`. */
export function validateStrides(value: unknown, shape: readonly number[], argument: string): readonly number[] {
  if (!Array.isArray(value) || value.length !== shape.length) {
    throw invalidArgument(argument, `expected ${shape.length} strides (one per dimension of [${shape.join(", ")}]), got ${describeValue(value)}`);
  }
  for (let i = 0; i < value.length; i++) {
    const stride: unknown = value[i];
    if (typeof stride !== "number" || !Number.isSafeInteger(stride) || stride < 0) {
      throw invalidArgument(argument, `expected strides in elements (integers >= 0), got ${describeNumber(stride)} at index ${i} of ${listText(value)}`);
    }
  }
  return Object.freeze([...(value as number[])]);
}

/**
 * Accepts a device address as a number or bigint and returns it as a number. Addresses are
 * kept as numbers throughout (see ffi/symbols.ts), which is exact below 2^53 — every address a
 * current GPU hands out.
 */
export function validatePointer(value: unknown, argument: string, what = "device address"): number {
  const address = typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (typeof address !== "number" || !Number.isSafeInteger(address) || address <= 0) {
    throw invalidArgument(argument, `expected a non-NULL ${what} (a positive integer below 2^53), got ${describeValue(value)}`);
  }
  return address;
}

/** The row-major strides, in elements, of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= Math.max(shape[i]!, 1);
  }
  return strides;
}

/**
 * True when a tensor of `shape` and `strides` occupies one dense row-major block. Dimensions of
 * size 1 are ignored, as their stride never moves the address (so [n, 1, d] views with any middle
 * stride still count as contiguous).
 */
export function isContiguousLayout(shape: readonly number[], strides: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const size = shape[i]!;
    if (size === 1) continue;
    if (size === 0) return true;
    if (strides[i] !== expected) return false;
    expected *= size;
  }
  return true;
}

/**
 * True for an object written as `{ … }` (or made by Object.create(null)): one whose own keys are
 * its options. A Map, a class instance or an array keeps what it holds elsewhere, so reading its
 * keys as options would silently see none.
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Accepts `undefined` or a plain options object whose keys are all in `allowed`. Unknown keys
 * are refused rather than ignored: a misspelt `rowPerWarp` that is silently dropped is a
 * performance bug nobody finds.
 */
export function validateOptionKeys(value: object, argument: string, allowed: readonly string[]): Record<string, unknown>;
export function validateOptionKeys(value: unknown, argument: string, allowed: readonly string[]): Record<string, unknown> | undefined;
export function validateOptionKeys(value: unknown, argument: string, allowed: readonly string[]): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) {
    throw invalidArgument(argument, `expected a plain options object ({ … }), got ${describeValue(value)}`);
  }
  for (const key in value) {
    if (!allowed.includes(key)) {
      throw invalidArgument(`${argument}.${key}`, `unknown option; the options are ${allowed.join(", ")}`);
    }
  }
  return value as Record<string, unknown>;
}

/** The formats {@link validateRequestedFormat} names, quoted. */
const REQUESTED_FORMAT_NAMES = REQUESTED_FORMATS.map((f) => `"${f}"`).join(", ");

/** Accepts what `options.format` may be: one of {@link REQUESTED_FORMATS}. */
export function validateRequestedFormat(value: unknown, argument: string): RequestedFormat {
  if (!(REQUESTED_FORMATS as readonly unknown[]).includes(value)) {
    throw invalidArgument(argument, `expected one of ${REQUESTED_FORMAT_NAMES}, got ${describeValue(value)}`);
  }
  return value as RequestedFormat;
}
