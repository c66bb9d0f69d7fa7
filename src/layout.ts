/**
 * From tensors to the numbers the C write takes.
 *
 * `planSetMlaKvBuffer` checks the four tensors of a write against each other and reduces them to
 * rows: one base address, a row stride in bytes and the bytes used per row, for the cache and each
 * source. It is pure (it reads metadata and never touches the GPU), so every rule is testable on a
 * machine without one, and the C side only has to recheck what it cannot trust.
 *
 * @module
 */

import type { LayoutKeyInput } from "./dispatch.ts";
import { DTYPES, type DType } from "./dtypes.ts";
import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import { DS_MLA, flatFp8ShapeProblem, isQuantized, quantizedRowBytes, type QuantizedFormat, type SourceDtype, type WriteFormat } from "./write_format.ts";
import { DeviceTensor } from "./tensor.ts";
import { validateDevice } from "./validate.ts";

/** Everything `mla_kv_set_kv_buffer` needs, derived from the tensors of one write. */
export interface SetMlaKvBufferPlan {
  readonly device: number;
  /** Address of slot 0 of the cache. */
  readonly cachePtr: number;
  /** Number of slots (rows) in the cache; loc values must be below it. */
  readonly capacity: number;
  readonly cacheRowStrideBytes: number;
  readonly locPtr: number;
  /** 4 for int32 loc, 8 for int64. */
  readonly locBytes: 4 | 8;
  /** Rows to write; 0 means the caller launches nothing. */
  readonly n: number;
  readonly nopePtr: number;
  readonly nopeRowStrideBytes: number;
  /** Bytes of each kNope row, written at the start of the cache row. */
  readonly nopeBytes: number;
  readonly ropePtr: number;
  readonly ropeRowStrideBytes: number;
  /** Bytes of each kRope row, written right after the nope bytes (a copy). */
  readonly ropeBytes: number;
  /** How rows are stored: a byte copy, or quantized to fp8 from bf16/fp16 sources. */
  readonly format: WriteFormat;
  /** The sources' dtype when the write quantizes, else null. */
  readonly sourceDtype: SourceDtype | null;
  /** Elements of each kNope and kRope row. */
  readonly nopeElems: number;
  readonly ropeElems: number;
  /** Bytes the write stores into each cache row. */
  readonly rowBytes: number;
  /** True when the TMA path may be used (see {@link tmaMisalignments}). */
  readonly tmaAligned: boolean;
}

/** The formats a caller may ask for: `"fp8"` is the flat fp8 of the cache's own dtype. */
export type RequestedFormat = "copy" | "fp8" | "fp8_ds_mla";

/** Every {@link RequestedFormat}, for validation. */
export const REQUESTED_FORMATS: readonly RequestedFormat[] = ["copy", "fp8", "fp8_ds_mla"];

/** Options that constrain a plan. */
export interface PlanOptions {
  /** When given, every tensor must be on this device. */
  device?: number;
  /**
   * How to store rows. Default: a copy when the sources have the cache's dtype, flat fp8 when an
   * fp8_e4m3/fp8_e5m2 cache gets bf16/fp16 sources. `"fp8_ds_mla"` must be asked for.
   */
  format?: RequestedFormat;
}

/** The alignment, in bytes, that TMA bulk copies require of addresses, strides and sizes. */
export const TMA_ALIGNMENT = 16;

/**
 * Whether rows of this layout can ever take the TMA path. A copy needs the nope and rope byte
 * sizes (and so the row) to be multiples of {@link TMA_ALIGNMENT}; a quantizing write stages the
 * converted row, so only the cache row's size matters. Addresses and strides are per call; the
 * tuner, which times on aligned scratch buffers, only needs this.
 */
export function layoutAllowsTma(layout: LayoutKeyInput): boolean {
  if (isQuantized(layout.format)) return layoutRowBytes(layout) % TMA_ALIGNMENT === 0;
  return layout.nopeBytes % TMA_ALIGNMENT === 0 && layout.ropeBytes % TMA_ALIGNMENT === 0;
}

/**
 * Bytes each cache row of a layout receives: a copy's nope and rope bytes, or the quantizing
 * format's row (its sources are 2-byte bf16/fp16 elements).
 */
export function layoutRowBytes(layout: LayoutKeyInput): number {
  return isQuantized(layout.format)
    ? quantizedRowBytes(layout.format, layout.nopeBytes / 2, layout.ropeBytes / 2)
    : layout.nopeBytes + layout.ropeBytes;
}

const ROW_DTYPE_NAMES = "bf16, fp16, u8, fp8_e4m3 or fp8_e5m2";
const WRITABLE: ReadonlySet<DType> = new Set<DType>(["bf16", "fp16", "u8", "fp8_e4m3", "fp8_e5m2"]);

function shapeText(tensor: DeviceTensor): string {
  return `[${tensor.shape.join(", ")}]`;
}

function expectTensor(value: unknown, argument: string): DeviceTensor {
  if (!(value instanceof DeviceTensor)) {
    throw invalidArgument(argument, `expected a DeviceTensor, got ${describeValue(value)}`);
  }
  if (value.disposed) {
    throw new MlaKvError("DISPOSED", `${argument}: the tensor was freed before this call`, argument);
  }
  return value;
}

/** A cache tensor read as rows: slot count, slot stride and row width, in elements. */
interface CacheRows {
  capacity: number;
  rowStride: number;
  width: number;
}

/**
 * Reads a cache tensor as rows. Rows are its last dimension; the leading dimensions collapse
 * into one slot index when they step uniformly ([slots, W], [slots, 1, W], or a paged
 * [pages, pageSize, W] with stride[0] == pageSize * stride[1]), which is what lets a paged cache
 * be addressed by a flat loc = page * pageSize + offset.
 */
function cacheRows(kvBuffer: DeviceTensor): CacheRows {
  const { shape, strides } = kvBuffer;
  const rank = shape.length;
  if (rank < 2) {
    throw invalidArgument("kvBuffer", `expected at least 2 dimensions ([slots, width], [slots, 1, width] or [pages, pageSize, width]), got shape ${shapeText(kvBuffer)}`);
  }
  const width = shape[rank - 1]!;
  if (width === 0) throw invalidArgument("kvBuffer", `expected rows of at least 1 column, got shape ${shapeText(kvBuffer)}`);
  if (width > 1 && strides[rank - 1] !== 1) {
    throw invalidArgument("kvBuffer", `expected a contiguous last dimension (stride 1), got strides [${strides.join(", ")}]`);
  }
  let capacity = 1;
  let rowStride = -1;
  // Walk the leading dimensions inward-out; each non-unit one must continue the step of the
  // one inside it. Unit dimensions never move the address, so their strides do not matter.
  let innerSize = 1;
  let innerStride = 0;
  for (let i = rank - 2; i >= 0; i--) {
    const size = shape[i]!;
    capacity *= size;
    if (size === 1) continue;
    if (rowStride < 0) {
      rowStride = strides[i]!;
    } else if (strides[i] !== innerSize * innerStride) {
      throw invalidArgument(
        "kvBuffer",
        `expected leading dimensions that collapse into slots with one uniform stride (stride[${i}] == ${innerSize} * ${innerStride} = ${innerSize * innerStride}), ` +
          `got shape ${shapeText(kvBuffer)} with strides [${strides.join(", ")}]`,
      );
    }
    innerSize = size;
    innerStride = strides[i]!;
  }
  if (capacity === 0) throw invalidArgument("kvBuffer", `expected at least one slot, got shape ${shapeText(kvBuffer)}`);
  if (rowStride < 0) rowStride = width; // a single slot: its stride is never used to step
  if (capacity > 1 && rowStride < width) {
    throw invalidArgument("kvBuffer", `expected a row stride of at least the row width ${width} so that rows do not overlap, got ${rowStride} elements`);
  }
  return { capacity, rowStride, width };
}

/** kNope or kRope read as rows: row count, width and row stride, in elements. */
interface SourceRows {
  n: number;
  width: number;
  rowStride: number;
}

/** Reads kNope or kRope as rows: shape [n, d] or [n, 1, d], last dimension contiguous. */
function sourceRows(tensor: DeviceTensor, argument: string): SourceRows {
  const { shape, strides } = tensor;
  const rank = shape.length;
  if (!(rank === 2 || (rank === 3 && shape[1] === 1))) {
    throw invalidArgument(argument, `expected shape [n, d] or [n, 1, d], got ${shapeText(tensor)}`);
  }
  const n = shape[0]!;
  // A zero-width part is allowed (e.g. a cache that stores no rope), as long as the other part
  // has columns; planSetMlaKvBuffer checks the sum.
  const width = shape[rank - 1]!;
  if (width > 1 && strides[rank - 1] !== 1) {
    throw invalidArgument(argument, `expected a contiguous last dimension (stride 1), got strides [${strides.join(", ")}]`);
  }
  let rowStride = strides[0]!;
  if (n > 1 && rowStride < width) {
    throw invalidArgument(argument, `expected a row stride of at least ${width} elements so that rows do not overlap, got ${rowStride}`);
  }
  // A single row is never stepped over; report a stride the C side will accept.
  if (n <= 1) rowStride = Math.max(rowStride, width);
  return { n, width, rowStride };
}

/** Reads loc as a contiguous vector: shape [n] or [n, 1]. */
function locRows(loc: DeviceTensor): number {
  const { shape, strides } = loc;
  if (!(shape.length === 1 || (shape.length === 2 && shape[1] === 1))) {
    throw invalidArgument("loc", `expected shape [n] or [n, 1], got ${shapeText(loc)}`);
  }
  const n = shape[0]!;
  if (n > 1 && strides[0] !== 1) {
    throw invalidArgument("loc", `expected a contiguous vector (stride 1), got strides [${strides.join(", ")}]`);
  }
  return n;
}

function expectSameDevice(tensor: DeviceTensor, argument: string, device: number, whose: string): void {
  if (tensor.device !== device) {
    throw invalidArgument(argument, `expected a tensor on device ${device} (${whose}), got device ${tensor.device}`);
  }
}

/** The plan values the TMA path's alignment depends on. */
export type TmaAlignmentInput = Pick<
  SetMlaKvBufferPlan,
  "cachePtr" | "cacheRowStrideBytes" | "nopePtr" | "nopeRowStrideBytes" | "nopeBytes" | "ropePtr" | "ropeRowStrideBytes" | "ropeBytes"
> & Partial<Pick<SetMlaKvBufferPlan, "format" | "rowBytes">>;

/**
 * The names of the plan values that are not multiples of {@link TMA_ALIGNMENT}, with their
 * values; empty when the TMA path may be used. The set is exactly what the library checks before
 * running TMA, so the automatic choice never picks a path the library then refuses: for a copy,
 * the cache, nope and rope addresses, their row strides and the nope and rope sizes; for a
 * quantizing write (which reads sources into registers and stages the converted row), the cache
 * address, its row stride and the row size. `loc` is read with plain loads and only needs its
 * natural alignment.
 */
export function tmaMisalignments(plan: TmaAlignmentInput): string[] {
  const checked: Record<string, number> = isQuantized(plan.format)
    ? { cachePtr: plan.cachePtr, cacheRowStrideBytes: plan.cacheRowStrideBytes, rowBytes: plan.rowBytes ?? 0 }
    : {
        cachePtr: plan.cachePtr,
        cacheRowStrideBytes: plan.cacheRowStrideBytes,
        nopePtr: plan.nopePtr,
        nopeRowStrideBytes: plan.nopeRowStrideBytes,
        nopeBytes: plan.nopeBytes,
        ropePtr: plan.ropePtr,
        ropeRowStrideBytes: plan.ropeRowStrideBytes,
        ropeBytes: plan.ropeBytes,
      };
  const misaligned: string[] = [];
  for (const [name, value] of Object.entries(checked)) {
    if (value % TMA_ALIGNMENT !== 0) misaligned.push(`${name} = ${name.endsWith("Ptr") ? `0x${value.toString(16)}` : value}`);
  }
  return misaligned;
}

/**
 * Checks the tensors of one write and derives the C call's arguments.
 *
 * - `kvBuffer`: [slots, W], [slots, 1, W] or [pages, pageSize, W]; last dimension contiguous.
 *   capacity = product of the leading dimensions.
 * - `kNope`, `kRope`: [n, d] or [n, 1, d]; last dimension contiguous, rows may be strided (views
 *   of wider tensors).
 *   - a copy: the cache's dtype (bf16, fp16, u8, fp8_e4m3 or fp8_e5m2); 0 < d_nope + d_rope <= W
 *     (one part may be empty).
 *   - flat fp8 (an fp8_e4m3 or fp8_e5m2 cache, bf16 or fp16 sources): d_nope a multiple of 16 up
 *     to 1024, d_rope a multiple of 2 up to 128, 0 < d_nope + d_rope <= W.
 *   - fp8_ds_mla (a u8 or fp8_e4m3 cache, bf16 or fp16 sources): d_nope = 512, d_rope = 64,
 *     W >= 656.
 * - `loc`: [n] or [n, 1], contiguous, i32 or i64.
 * - All on one device (and on `options.device` when given); n may be 0.
 *
 * @throws {MlaKvError} `INVALID_ARGUMENT` naming the argument, with what was expected and what was
 * got; `DISPOSED` for a freed tensor.
 */
export function planSetMlaKvBuffer(
  kvBuffer: DeviceTensor,
  loc: DeviceTensor,
  kNope: DeviceTensor,
  kRope: DeviceTensor,
  options: PlanOptions = {},
): SetMlaKvBufferPlan {
  const cache = expectTensor(kvBuffer, "kvBuffer");
  const locTensor = expectTensor(loc, "loc");
  const nope = expectTensor(kNope, "kNope");
  const rope = expectTensor(kRope, "kRope");

  const dtype = cache.dtype;
  if (!WRITABLE.has(dtype)) throw invalidArgument("kvBuffer", `expected dtype ${ROW_DTYPE_NAMES}, got ${dtype}`);
  const format = writeFormatOf(dtype, nope.dtype, options.format);
  if (isQuantized(format)) {
    if (nope.dtype !== "bf16" && nope.dtype !== "fp16") {
      throw invalidArgument("kNope", `expected dtype bf16 or fp16 (a ${format} write quantizes them), got ${nope.dtype}`);
    }
    if (rope.dtype !== nope.dtype) throw invalidArgument("kRope", `expected dtype ${nope.dtype} (kNope's dtype), got ${rope.dtype}`);
  } else {
    if (nope.dtype !== dtype) throw invalidArgument("kNope", `expected dtype ${dtype} (the cache's dtype), got ${nope.dtype}`);
    if (rope.dtype !== dtype) throw invalidArgument("kRope", `expected dtype ${dtype} (the cache's dtype), got ${rope.dtype}`);
  }
  if (locTensor.dtype !== "i32" && locTensor.dtype !== "i64") {
    throw invalidArgument("loc", `expected dtype i32 or i64, got ${locTensor.dtype}`);
  }

  const device = cache.device;
  if (options.device !== undefined) {
    validateDevice(options.device, "options.device");
    expectSameDevice(cache, "kvBuffer", options.device, "options.device");
  }
  expectSameDevice(locTensor, "loc", device, "kvBuffer's device");
  expectSameDevice(nope, "kNope", device, "kvBuffer's device");
  expectSameDevice(rope, "kRope", device, "kvBuffer's device");

  const rows = cacheRows(cache);
  const n = locRows(locTensor);
  const nopeRows = sourceRows(nope, "kNope");
  const ropeRows = sourceRows(rope, "kRope");
  if (nopeRows.n !== n) throw invalidArgument("kNope", `expected ${n} rows (as many as loc), got ${nopeRows.n}`);
  if (ropeRows.n !== n) throw invalidArgument("kRope", `expected ${n} rows (as many as loc), got ${ropeRows.n}`);
  const cacheBytes = DTYPES[dtype].bytes;
  const rowBytes = isQuantized(format)
    ? checkQuantizedShapes(format, rows.width * cacheBytes, nopeRows.width, ropeRows.width, nope, rope)
    : checkCopyShapes(dtype, rows.width, nopeRows.width, ropeRows.width, nope, rope) * cacheBytes;

  const locBytes = DTYPES[locTensor.dtype].bytes as 4 | 8;
  const locPtr = locTensor.ptr;
  if (locPtr % locBytes !== 0) {
    // The kernel reads loc with plain typed loads, which fault on a misaligned address.
    throw invalidArgument("loc", `expected an address aligned to its ${locBytes}-byte elements, got 0x${locPtr.toString(16)}`);
  }

  const sourceBytes = DTYPES[nope.dtype].bytes;
  const fields = {
    device,
    cachePtr: cache.ptr,
    capacity: rows.capacity,
    cacheRowStrideBytes: rows.rowStride * cacheBytes,
    locPtr,
    locBytes,
    n,
    nopePtr: nope.ptr,
    nopeRowStrideBytes: nopeRows.rowStride * sourceBytes,
    nopeBytes: nopeRows.width * sourceBytes,
    ropePtr: rope.ptr,
    ropeRowStrideBytes: ropeRows.rowStride * sourceBytes,
    ropeBytes: ropeRows.width * sourceBytes,
    format,
    sourceDtype: isQuantized(format) ? (nope.dtype as SourceDtype) : null,
    nopeElems: nopeRows.width,
    ropeElems: ropeRows.width,
    rowBytes,
  };
  return { ...fields, tmaAligned: isTmaAligned(fields) };
}

/** The write's format from the dtypes and what was asked for. */
function writeFormatOf(cacheDtype: DType, sourceDtype: DType, requested: RequestedFormat | undefined): WriteFormat {
  if (requested !== undefined && !REQUESTED_FORMATS.includes(requested)) {
    throw invalidArgument("options.format", `expected "copy", "fp8" or "fp8_ds_mla", got ${describeValue(requested)}`);
  }
  const fp8Cache = cacheDtype === "fp8_e4m3" || cacheDtype === "fp8_e5m2";
  const wideSources = sourceDtype === "bf16" || sourceDtype === "fp16";
  if (requested === "fp8_ds_mla") {
    if (cacheDtype !== "u8" && cacheDtype !== "fp8_e4m3") {
      throw invalidArgument("kvBuffer", `expected dtype u8 or fp8_e4m3 for the fp8_ds_mla format (656-byte rows of mixed content), got ${cacheDtype}`);
    }
    return "fp8_ds_mla";
  }
  if (requested === "fp8" || (requested === undefined && fp8Cache && wideSources)) {
    if (!fp8Cache) {
      throw invalidArgument("kvBuffer", `expected dtype fp8_e4m3 or fp8_e5m2 for the fp8 format (the cache's dtype names the fp8 kind), got ${cacheDtype}`);
    }
    return cacheDtype as "fp8_e4m3" | "fp8_e5m2";
  }
  return "copy";
}

/** A copy's shape rules; returns the elements each cache row receives. */
function checkCopyShapes(dtype: DType, width: number, nopeWidth: number, ropeWidth: number, nope: DeviceTensor, rope: DeviceTensor): number {
  if (nopeWidth > width) {
    throw invalidArgument("kNope", `expected at most ${width} columns of ${dtype} (the cache row width), got ${nopeWidth}`);
  }
  if (nopeWidth + ropeWidth === 0) {
    throw invalidArgument("kNope", `expected at least one column in kNope or kRope, got shapes ${shapeText(nope)} and ${shapeText(rope)}`);
  }
  const ropeRoom = width - nopeWidth;
  if (ropeWidth > ropeRoom) {
    throw invalidArgument(
      "kRope",
      `expected at most ${ropeRoom} columns of ${dtype} to fit the cache row (width ${width}, of which kNope uses ${nopeWidth}), got ${ropeWidth}`,
    );
  }
  return nopeWidth + ropeWidth;
}

/** A quantizing write's shape rules; returns the bytes each cache row receives. */
function checkQuantizedShapes(
  format: QuantizedFormat,
  cacheRowBytes: number,
  nopeWidth: number,
  ropeWidth: number,
  nope: DeviceTensor,
  rope: DeviceTensor,
): number {
  for (const [tensor, name] of [[nope, "kNope"], [rope, "kRope"]] as const) {
    if (tensor.ptr % 2 !== 0) throw invalidArgument(name, `expected an address aligned to its 2-byte elements, got 0x${tensor.ptr.toString(16)}`);
  }
  if (format === "fp8_ds_mla") {
    if (nopeWidth !== DS_MLA.nopeElems) throw invalidArgument("kNope", `expected ${DS_MLA.nopeElems} columns (the fp8_ds_mla row's nope part), got ${nopeWidth}`);
    if (ropeWidth !== DS_MLA.ropeElems) throw invalidArgument("kRope", `expected ${DS_MLA.ropeElems} columns (the fp8_ds_mla row's rope part), got ${ropeWidth}`);
  } else {
    const problem = flatFp8ShapeProblem(nopeWidth, ropeWidth);
    if (problem !== null) {
      throw invalidArgument(problem.includes("rope") ? "kRope" : "kNope", `a ${format} write needs shapes it converts in one pass: ${problem}`);
    }
  }
  const rowBytes = quantizedRowBytes(format, nopeWidth, ropeWidth);
  if (rowBytes > cacheRowBytes) {
    throw invalidArgument("kvBuffer", `expected rows of at least ${rowBytes} bytes for a ${format} write of ${nopeWidth} + ${ropeWidth} elements, got ${cacheRowBytes}`);
  }
  return rowBytes;
}

// The boolean form of tmaMisalignments, without building strings: it runs on every write.
function isTmaAligned(plan: TmaAlignmentInput): boolean {
  const a = TMA_ALIGNMENT;
  if (isQuantized(plan.format)) {
    return plan.cachePtr % a === 0 && plan.cacheRowStrideBytes % a === 0 && (plan.rowBytes ?? 0) % a === 0;
  }
  return (
    plan.cachePtr % a === 0 &&
    plan.cacheRowStrideBytes % a === 0 &&
    plan.nopePtr % a === 0 &&
    plan.nopeRowStrideBytes % a === 0 &&
    plan.nopeBytes % a === 0 &&
    plan.ropePtr % a === 0 &&
    plan.ropeRowStrideBytes % a === 0 &&
    plan.ropeBytes % a === 0
  );
}
