/**
 * What a write stores: a byte copy of the sources, or the sources quantized to fp8 on the way.
 *
 * - `"copy"`: cache row = [kNope | kRope], bytes as they are (any dtype, the cache's own).
 * - `"fp8_e4m3"`, `"fp8_e5m2"`: flat fp8 rows, one byte an element, each x stored as
 *   fp8(x / scale) with one per-tensor scale; bf16 or fp16 sources.
 * - `"fp8_ds_mla"`: the DeepSeek sparse-MLA fp8 row of 656 bytes:
 *   [512 × e4m3 nope | 4 × fp32 scales, one per 128-element tile | 64 × bf16 rope], the tile
 *   scales computed in the write (amax / 448 over the tile's finite elements).
 *
 * The exact conversion rule (rounding, saturation, NaN, ±inf, zero tiles) is documented once, in
 * cuda/quantize_fp8.cuh and the README.
 *
 * @module
 */

/** The formats that convert bf16/fp16 sources to fp8 in the write. */
export type QuantizedFormat = "fp8_e4m3" | "fp8_e5m2" | "fp8_ds_mla";

/** How a write stores its rows. */
export type WriteFormat = "copy" | QuantizedFormat;

/** Element types a quantizing write reads. */
export type SourceDtype = "bf16" | "fp16";

/** The DeepSeek sparse-MLA fp8 row, in elements and bytes. */
export const DS_MLA = Object.freeze({
  nopeElems: 512,
  ropeElems: 64,
  tileElems: 128,
  scalesOffset: 512,
  ropeOffset: 528,
  rowBytes: 656,
});

/**
 * The shapes a flat fp8 row may have. A warp converts a row in one pass: the nope part in
 * 16-element chunks (at most 2 a lane), the rope part in pairs (at most 2 a lane), so MLA's
 * 512 + 64 keeps every lane equally busy.
 */
export const FLAT_FP8 = Object.freeze({ nopeMultiple: 16, maxNopeElems: 1024, ropeMultiple: 2, maxRopeElems: 128 });

/** Why a flat fp8 row of these parts cannot be written, or null when it can. */
export function flatFp8ShapeProblem(nopeElems: number, ropeElems: number): string | null {
  if (nopeElems % FLAT_FP8.nopeMultiple !== 0 || nopeElems > FLAT_FP8.maxNopeElems) {
    return `the nope part must be a multiple of ${FLAT_FP8.nopeMultiple} elements up to ${FLAT_FP8.maxNopeElems}, got ${nopeElems}`;
  }
  if (ropeElems % FLAT_FP8.ropeMultiple !== 0 || ropeElems > FLAT_FP8.maxRopeElems) {
    return `the rope part must be a multiple of ${FLAT_FP8.ropeMultiple} elements up to ${FLAT_FP8.maxRopeElems}, got ${ropeElems}`;
  }
  if (nopeElems + ropeElems === 0) return "the row needs at least one element";
  return null;
}

/** True for the formats that quantize. */
export function isQuantized(format: WriteFormat | undefined): format is QuantizedFormat {
  return format !== undefined && format !== "copy";
}

/** Bytes one cache row of a quantizing format takes: one per element (flat), or 656 (ds_mla). */
export function quantizedRowBytes(format: QuantizedFormat, nopeElems: number, ropeElems: number): number {
  return format === "fp8_ds_mla" ? DS_MLA.rowBytes : nopeElems + ropeElems;
}
