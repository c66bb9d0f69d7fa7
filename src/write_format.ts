/**
 * The byte geometry of each write format: how many bytes a cache row (or a page) of it holds, and
 * which source shapes it takes. The conversion rules themselves (rounding, saturation, NaN, ±inf,
 * scale rules) are written once, in cuda/fp8_rules.h, and stated in the README.
 *
 * - `"copy"`: cache row = [kNope | kRope], bytes as they are (any dtype, the cache's own).
 * - `"fp8_e4m3"`, `"fp8_e5m2"`: flat fp8 rows, one byte an element, x stored as fp8(x / scale).
 * - `"fp8_ds_mla"`: the DeepSeek V3.2 sparse-MLA row of 656 bytes:
 *   [512 × e4m3 | 4 × fp32 scales, one per 128-element tile | 64 × bf16 rope].
 * - `"fp8_ds_v4"`: DeepSeek V4's paged layout: a page of `pageSize` tokens holds all its token rows
 *   [448 × e4m3 | 64 × bf16] (576 B), then all its tokens' scale words [7 × ue8m0 | pad] (8 B),
 *   padded to a multiple of 576 B.
 * - `"fp8_indexer"`: the indexer's K cache, paged: all tokens' 128 × e4m3, then their fp32 scales.
 *
 * @module
 */

import type { PagedFormat, QuantizedFormat, WriteFormat } from "./vocabulary.ts";

/** The DeepSeek V3.2 sparse-MLA fp8 row, in elements and bytes. */
export const DS_MLA = Object.freeze({ nopeElems: 512, ropeElems: 64, tileElems: 128, scalesOffset: 512, ropeOffset: 528, rowBytes: 656 });

/** The DeepSeek V4 token: 448 e4m3 + 64 bf16 in the page's row area, an 8-byte scale word after them. */
export const DS_V4 = Object.freeze({ nopeElems: 448, ropeElems: 64, tileElems: 64, tokenRowBytes: 576, scaleWordBytes: 8, pageAlignment: 576 });

/** The indexer K token: 128 e4m3 in the page's value area, a 4-byte fp32 scale after them all. */
export const INDEXER = Object.freeze({ nopeElems: 128, ropeElems: 0, valueBytes: 128, scaleBytes: 4 });

/**
 * The shapes a flat fp8 row may have. A warp converts a row in one pass: the nope part in
 * 16-element chunks (at most 2 a lane), the rope part in pairs (at most 2 a lane).
 */
export const FLAT_FP8 = Object.freeze({ nopeMultiple: 16, maxNopeElems: 1024, ropeMultiple: 2, maxRopeElems: 128 });

/** Why a quantizing format cannot take rows of these parts, or null when it can. */
export function quantizedShapeProblem(format: QuantizedFormat, nopeElems: number, ropeElems: number): string | null {
  const fixed = format === "fp8_ds_mla" ? DS_MLA : format === "fp8_ds_v4" ? DS_V4 : format === "fp8_indexer" ? INDEXER : null;
  if (fixed !== null) {
    if (nopeElems !== fixed.nopeElems) return `the ${format} nope part has ${fixed.nopeElems} elements, got ${nopeElems}`;
    if (ropeElems !== fixed.ropeElems) return `the ${format} rope part has ${fixed.ropeElems} elements, got ${ropeElems}`;
    return null;
  }
  if (nopeElems % FLAT_FP8.nopeMultiple !== 0 || nopeElems > FLAT_FP8.maxNopeElems) {
    return `the nope part must be a multiple of ${FLAT_FP8.nopeMultiple} elements up to ${FLAT_FP8.maxNopeElems}, got ${nopeElems}`;
  }
  if (ropeElems % FLAT_FP8.ropeMultiple !== 0 || ropeElems > FLAT_FP8.maxRopeElems) {
    return `the rope part must be a multiple of ${FLAT_FP8.ropeMultiple} elements up to ${FLAT_FP8.maxRopeElems}, got ${ropeElems}`;
  }
  if (nopeElems + ropeElems === 0) return "the row needs at least one element";
  return null;
}

/**
 * Bytes one cache row of a row format receives (a copy's source bytes; flat: one an element;
 * ds_mla: 656), or, for a paged format, the bytes of one token's row in its page (576, 128).
 */
export function formatRowBytes(format: WriteFormat, nopeBytes: number, ropeBytes: number): number {
  switch (format) {
    case "copy": return nopeBytes + ropeBytes;
    case "fp8_e4m3":
    case "fp8_e5m2": return (nopeBytes + ropeBytes) / 2;
    case "fp8_ds_mla": return DS_MLA.rowBytes;
    case "fp8_ds_v4": return DS_V4.tokenRowBytes;
    case "fp8_indexer": return INDEXER.valueBytes;
  }
}

/** Bytes a page of `pageSize` tokens of a paged format takes (its row stride must be at least this). */
export function pageBytes(format: PagedFormat, pageSize: number): number {
  if (format === "fp8_indexer") return pageSize * (INDEXER.valueBytes + INDEXER.scaleBytes);
  const bytes = pageSize * (DS_V4.tokenRowBytes + DS_V4.scaleWordBytes);
  return Math.ceil(bytes / DS_V4.pageAlignment) * DS_V4.pageAlignment;
}
