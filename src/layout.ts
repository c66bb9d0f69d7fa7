/**
 * From tensors to the numbers the C write takes.
 *
 * `planSetMlaKvBuffer` checks the four tensors of a write against each other and reduces them to
 * rows: one base address, a row stride in bytes and the bytes used per row, for the cache and each
 * source. It is pure (it reads metadata and never touches the GPU), so every rule is testable on a
 * machine without one, and the C side only has to recheck what it cannot trust. A plan is also
 * the write's layout (what dispatch tables are keyed by) and its geometry (what decides which
 * paths may run it), so the hot path derives each once.
 *
 * @module
 */

import { DTYPES, type DType } from "./dtypes.ts";
import { alignmentOf, type WriteGeometry } from "./eligibility.ts";
import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import type { WriteLayout } from "./layout_key.ts";
import { DeviceTensor } from "./tensor.ts";
import { validateDevice, validateRequestedFormat } from "./validate.ts";
import {
  FORMAT_SCALE_RULES,
  isPaged,
  isQuantized,
  PAGED_FORMATS,
  type PagedFormat,
  type QuantizedFormat,
  type RequestedFormat,
  type ScaleRule,
  type SourceDtype,
  type WriteFormat,
} from "./vocabulary.ts";
import { formatRowBytes, pageBytes, quantizedShapeProblem } from "./write_format.ts";

/** Everything the C write needs, derived from the tensors of one write. */
export interface SetMlaKvBufferPlan extends WriteLayout, WriteGeometry {
  readonly device: number;
  /** Address of slot 0 (a paged format: of page 0) of the cache. */
  readonly cachePtr: number;
  /** Number of slots in the cache; loc values must be below it. */
  readonly capacity: number;
  /** Bytes between cache rows (a paged format: between pages). */
  readonly cacheRowStrideBytes: number;
  readonly locPtr: number;
  /** Rows to write; 0 means the caller launches nothing. */
  readonly n: number;
  readonly nopePtr: number;
  readonly nopeRowStrideBytes: number;
  /** 0 when there is no rope part (kRope omitted). */
  readonly ropePtr: number;
  readonly ropeRowStrideBytes: number;
  /** Elements of each kNope and kRope row. */
  readonly nopeElems: number;
  readonly ropeElems: number;
}

/** Options that constrain a plan. */
export interface PlanOptions {
  /** When given, every tensor must be on this device. */
  device?: number;
  /**
   * How to store rows. Default: a copy when the sources have the cache's dtype, flat fp8 when an
   * fp8_e4m3/fp8_e5m2 cache gets bf16/fp16 sources. The tile-scaled formats must be asked for.
   */
  format?: RequestedFormat;
  /** Tokens a page, for the paged formats (fp8_ds_v4, fp8_indexer); required there. */
  pageSize?: number;
  /** The scale rule of a tile-scaled format; default: the format's own (see FORMAT_SCALE_RULES). */
  scaleRule?: ScaleRule;
}

const ROW_DTYPE_NAMES = "bf16, fp16, u8, fp8_e4m3 or fp8_e5m2";
/** "fp8_ds_v4, fp8_indexer" and "fp8_ds_mla, fp8_ds_v4, fp8_indexer", for the refusals of a page size and a scale rule. */
const PAGED_FORMAT_NAMES = PAGED_FORMATS.join(", ");
const TILE_SCALED_FORMAT_NAMES = Object.keys(FORMAT_SCALE_RULES).join(", ");
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

/**
 * Checks the tensors of one write and derives the C call's arguments.
 *
 * - `kvBuffer`: [slots, W], [slots, 1, W] or [pages, pageSize, W] (row formats); [pages, pageBytes]
 *   u8 for the paged formats, with `options.pageSize`; last dimension contiguous.
 * - `kNope`, `kRope`: [n, d] or [n, 1, d]; last dimension contiguous, rows may be strided (views
 *   of wider tensors). `kRope` may be omitted (undefined) when the format has no rope part.
 *   - a copy: the cache's dtype (bf16, fp16, u8, fp8_e4m3 or fp8_e5m2); 0 < d_nope + d_rope <= W.
 *   - flat fp8 (an fp8_e4m3 or fp8_e5m2 cache, bf16 or fp16 sources): d_nope a multiple of 16 up
 *     to 1024, d_rope a multiple of 2 up to 128, 0 < d_nope + d_rope <= W.
 *   - fp8_ds_mla (a u8 or fp8_e4m3 cache): 512 + 64, W >= 656; fp8_ds_v4: 448 + 64; fp8_indexer:
 *     128 + none.
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
  kRope: DeviceTensor | undefined,
  options: PlanOptions = {},
): SetMlaKvBufferPlan {
  const cache = expectTensor(kvBuffer, "kvBuffer");
  const locTensor = expectTensor(loc, "loc");
  const nope = expectTensor(kNope, "kNope");
  const rope = kRope === undefined ? undefined : expectTensor(kRope, "kRope");

  const dtype = cache.dtype;
  if (!WRITABLE.has(dtype)) throw invalidArgument("kvBuffer", `expected dtype ${ROW_DTYPE_NAMES}, got ${dtype}`);
  const format = writeFormatOf(dtype, nope.dtype, options.format);
  const sourceDtype = isQuantized(format) ? checkQuantizedDtypes(format, nope, rope) : checkCopyDtypes(dtype, nope, rope);
  if (locTensor.dtype !== "i32" && locTensor.dtype !== "i64") {
    throw invalidArgument("loc", `expected dtype i32 or i64, got ${locTensor.dtype}`);
  }
  if (rope === undefined && format !== "fp8_indexer") {
    throw invalidArgument("kRope", `expected a DeviceTensor (only the fp8_indexer format has no rope part), got undefined`);
  }

  const device = cache.device;
  if (options.device !== undefined) {
    validateDevice(options.device, "options.device");
    expectSameDevice(cache, "kvBuffer", options.device, "options.device");
  }
  expectSameDevice(locTensor, "loc", device, "kvBuffer's device");
  expectSameDevice(nope, "kNope", device, "kvBuffer's device");
  if (rope !== undefined) expectSameDevice(rope, "kRope", device, "kvBuffer's device");

  const n = locRows(locTensor);
  const nopeRows = sourceRows(nope, "kNope");
  const ropeRows = rope === undefined ? { n, width: 0, rowStride: 0 } : sourceRows(rope, "kRope");
  if (nopeRows.n !== n) throw invalidArgument("kNope", `expected ${n} rows (as many as loc), got ${nopeRows.n}`);
  if (ropeRows.n !== n) throw invalidArgument("kRope", `expected ${n} rows (as many as loc), got ${ropeRows.n}`);
  const sourceBytes = DTYPES[nope.dtype].bytes;
  const nopeBytes = nopeRows.width * sourceBytes;
  const ropeBytes = ropeRows.width * sourceBytes;
  const rowBytes = formatRowBytes(format, nopeBytes, ropeBytes);
  const pageSize = pageSizeFor(format, options.pageSize);
  const scaleRule = scaleRuleFor(format, options.scaleRule);

  const cacheBytes = DTYPES[dtype].bytes;
  let capacity: number;
  let cacheRowStrideBytes: number;
  if (isPaged(format)) {
    ({ capacity, cacheRowStrideBytes } = cachePages(cache, format, pageSize));
    checkQuantizedShapes(format, nopeRows.width, ropeRows.width);
  } else {
    const rows = cacheRows(cache);
    capacity = rows.capacity;
    cacheRowStrideBytes = rows.rowStride * cacheBytes;
    const widthBytes = rows.width * cacheBytes;
    if (isQuantized(format)) {
      checkQuantizedShapes(format, nopeRows.width, ropeRows.width);
      if (rowBytes > widthBytes) {
        throw invalidArgument("kvBuffer", `expected rows of at least ${rowBytes} bytes for a ${format} write of ${nopeRows.width} + ${ropeRows.width} elements, got ${widthBytes}`);
      }
    } else {
      checkCopyShapes(dtype, rows.width, nopeRows.width, ropeRows.width, nope, rope);
    }
  }

  const locBytes = DTYPES[locTensor.dtype].bytes as 4 | 8;
  const locPtr = locTensor.ptr;
  if (locPtr % locBytes !== 0) {
    // The kernel reads loc with plain typed loads, which fault on a misaligned address.
    throw invalidArgument("loc", `expected an address aligned to its ${locBytes}-byte elements, got 0x${locPtr.toString(16)}`);
  }
  // An empty part passes NULL: the library counts every non-NULL pointer in the alignment rule.
  const nopePtr = nopeBytes === 0 ? 0 : nope.ptr;
  const ropePtr = rope === undefined || ropeBytes === 0 ? 0 : rope.ptr;
  const nopeRowStrideBytes = nopeRows.rowStride * sourceBytes;
  const ropeRowStrideBytes = ropeRows.rowStride * sourceBytes;
  const cachePtr = cache.ptr;
  // What a path's alignment rule looks at (eligibility.ts): a quantizing write reads its sources
  // into registers whatever their alignment, so only the cache side counts for it.
  const aligned = isQuantized(format)
    ? [cachePtr, cacheRowStrideBytes, rowBytes]
    : [cachePtr, cacheRowStrideBytes, ...(nopeBytes > 0 ? [nopePtr, nopeRowStrideBytes, nopeBytes] : []), ...(ropeBytes > 0 ? [ropePtr, ropeRowStrideBytes, ropeBytes] : [])];
  return {
    device,
    cachePtr,
    capacity,
    cacheRowStrideBytes,
    locPtr,
    locBytes,
    n,
    nopePtr,
    nopeRowStrideBytes,
    nopeBytes,
    ropePtr,
    ropeRowStrideBytes,
    ropeBytes,
    format,
    sourceDtype,
    nopeElems: nopeRows.width,
    ropeElems: ropeRows.width,
    pageSize,
    scaleRule,
    rowBytes,
    alignment: alignmentOf(aligned),
  };
}

/** The write's format from the dtypes and what was asked for. */
function writeFormatOf(cacheDtype: DType, sourceDtype: DType, requested: RequestedFormat | undefined): WriteFormat {
  if (requested !== undefined) validateRequestedFormat(requested, "options.format");
  const fp8Cache = cacheDtype === "fp8_e4m3" || cacheDtype === "fp8_e5m2";
  const wideSources = sourceDtype === "bf16" || sourceDtype === "fp16";
  if (requested === "fp8_ds_mla" || requested === "fp8_ds_v4" || requested === "fp8_indexer") {
    if (cacheDtype !== "u8" && cacheDtype !== "fp8_e4m3") {
      throw invalidArgument("kvBuffer", `expected dtype u8 or fp8_e4m3 for the ${requested} format (rows of mixed content), got ${cacheDtype}`);
    }
    return requested;
  }
  if (requested === "fp8" || (requested === undefined && fp8Cache && wideSources)) {
    if (!fp8Cache) {
      throw invalidArgument("kvBuffer", `expected dtype fp8_e4m3 or fp8_e5m2 for the fp8 format (the cache's dtype names the fp8 kind), got ${cacheDtype}`);
    }
    return cacheDtype as "fp8_e4m3" | "fp8_e5m2";
  }
  return "copy";
}

function checkCopyDtypes(dtype: DType, nope: DeviceTensor, rope: DeviceTensor | undefined): null {
  if (nope.dtype !== dtype) throw invalidArgument("kNope", `expected dtype ${dtype} (the cache's dtype), got ${nope.dtype}`);
  if (rope !== undefined && rope.dtype !== dtype) throw invalidArgument("kRope", `expected dtype ${dtype} (the cache's dtype), got ${rope.dtype}`);
  return null;
}

function checkQuantizedDtypes(format: QuantizedFormat, nope: DeviceTensor, rope: DeviceTensor | undefined): SourceDtype {
  if (nope.dtype !== "bf16" && nope.dtype !== "fp16") {
    throw invalidArgument("kNope", `expected dtype bf16 or fp16 (a ${format} write quantizes them), got ${nope.dtype}`);
  }
  if (rope !== undefined && rope.dtype !== nope.dtype) throw invalidArgument("kRope", `expected dtype ${nope.dtype} (kNope's dtype), got ${rope.dtype}`);
  for (const [tensor, name] of [[nope, "kNope"], [rope, "kRope"]] as const) {
    if (tensor !== undefined && tensor.ptr % 2 !== 0) {
      throw invalidArgument(name, `expected an address aligned to its 2-byte elements, got 0x${tensor.ptr.toString(16)}`);
    }
  }
  return nope.dtype;
}

/** A copy's shape rules. */
function checkCopyShapes(dtype: DType, width: number, nopeWidth: number, ropeWidth: number, nope: DeviceTensor, rope: DeviceTensor | undefined): void {
  if (nopeWidth > width) {
    throw invalidArgument("kNope", `expected at most ${width} columns of ${dtype} (the cache row width), got ${nopeWidth}`);
  }
  if (nopeWidth + ropeWidth === 0) {
    throw invalidArgument("kNope", `expected at least one column in kNope or kRope, got shapes ${shapeText(nope)} and ${rope === undefined ? "none" : shapeText(rope)}`);
  }
  const ropeRoom = width - nopeWidth;
  if (ropeWidth > ropeRoom) {
    throw invalidArgument(
      "kRope",
      `expected at most ${ropeRoom} columns of ${dtype} to fit the cache row (width ${width}, of which kNope uses ${nopeWidth}), got ${ropeWidth}`,
    );
  }
}

/** A quantizing write's shape rules. */
function checkQuantizedShapes(format: QuantizedFormat, nopeWidth: number, ropeWidth: number): void {
  const problem = quantizedShapeProblem(format, nopeWidth, ropeWidth);
  if (problem !== null) throw invalidArgument(problem.includes("rope") ? "kRope" : "kNope", `a ${format} write needs shapes it converts in one pass: ${problem}`);
}

/** The page size a paged format needs (given, a whole number >= 1), or 0 for a row format. */
function pageSizeFor(format: WriteFormat, pageSize: number | undefined): number {
  if (!isPaged(format)) {
    if (pageSize !== undefined) throw invalidArgument("options.pageSize", `only the paged formats (${PAGED_FORMAT_NAMES}) take a page size; this write is ${format}`);
    return 0;
  }
  if (pageSize === undefined) throw invalidArgument("options.pageSize", `a ${format} cache is made of pages; pass the tokens a page (e.g. 64)`);
  return pageSize;
}

/** The scale rule in force: the caller's, checked against the format, else the format's default. */
function scaleRuleFor(format: WriteFormat, rule: ScaleRule | undefined): ScaleRule | null {
  const rules = isQuantized(format) ? FORMAT_SCALE_RULES[format] : undefined;
  if (rules === undefined) {
    if (rule !== undefined) throw invalidArgument("options.scaleRule", `only the tile-scaled formats (${TILE_SCALED_FORMAT_NAMES}) take a scale rule; this write is ${format}`);
    return null;
  }
  if (rule === undefined) return rules[0];
  if (!rules.includes(rule)) {
    throw invalidArgument("options.scaleRule", `a ${format} write takes scale rule ${rules.map((r) => `"${r}"`).join(" or ")}, got ${describeValue(rule)}`);
  }
  return rule;
}

/** A paged cache read as pages: [pages, pageBytes] or [pages, 1, pageBytes] of bytes. */
function cachePages(cache: DeviceTensor, format: PagedFormat, pageSize: number): { capacity: number; cacheRowStrideBytes: number } {
  const rows = cacheRows(cache);
  const needed = pageBytes(format, pageSize);
  const widthBytes = rows.width * DTYPES[cache.dtype].bytes;
  if (widthBytes < needed) {
    throw invalidArgument("kvBuffer", `expected pages of at least ${needed} bytes for ${pageSize} ${format} tokens (shape [pages, pageBytes]), got ${widthBytes}`);
  }
  const capacity = rows.capacity * pageSize;
  if (!Number.isSafeInteger(capacity)) throw invalidArgument("kvBuffer", `expected at most 2^53 - 1 slots, got ${rows.capacity} pages of ${pageSize}`);
  return { capacity, cacheRowStrideBytes: rows.rowStride * DTYPES[cache.dtype].bytes };
}

