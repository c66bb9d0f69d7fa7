/**
 * The whole quantizing write on the host: where each row of a write lands in the cache, for every
 * format, from the layout rules (not from any implementation of them). Both the CPU tests of the
 * C ABI's host fixture and the GPU suite compare a written cache with this, byte for byte.
 *
 * Row formats put slot s at byte s x cacheRowStride. Paged formats put slot s in page
 * s / pageSize (at byte page x cacheRowStride) as token s % pageSize, its parts at the offsets of
 * DS_V4_FP8 and INDEXER_FP8. Only the bytes a format defines are written; everything else of the
 * cache (pad bytes, page padding, other slots) keeps what it held.
 */
import {
  DEFAULT_SCALE_RULE,
  DS_MLA_FP8,
  DS_V4_FP8,
  dsV4PageBytes,
  INDEXER_FP8,
  indexerPageBytes,
  quantizeDsMlaRow,
  quantizeDsV4Token,
  quantizeFlatRow,
  quantizeIndexerToken,
  type ScaleRule,
  type SourceFormat,
} from "./fp8_reference.ts";

/** Every quantizing format, by the names the API gives them. */
export type QuantizedFormat = "fp8_e4m3" | "fp8_e5m2" | "fp8_ds_mla" | "fp8_ds_v4" | "fp8_indexer";

/** The sources' element counts of each tile-scaled format (flat formats take any). */
export const FORMAT_PARTS: Readonly<Record<"fp8_ds_mla" | "fp8_ds_v4" | "fp8_indexer", readonly [number, number]>> = {
  fp8_ds_mla: [DS_MLA_FP8.nopeDim, DS_MLA_FP8.ropeDim],
  fp8_ds_v4: [DS_V4_FP8.nopeDim, DS_V4_FP8.ropeDim],
  fp8_indexer: [INDEXER_FP8.dim, 0],
};

export function isPaged(format: QuantizedFormat): format is "fp8_ds_v4" | "fp8_indexer" {
  return format === "fp8_ds_v4" || format === "fp8_indexer";
}

/** Bytes a row format stores a slot, or a paged format a page. */
export function formatRowBytes(format: QuantizedFormat, nopeElems: number, ropeElems: number, pageSize: number): number {
  switch (format) {
    case "fp8_ds_mla": return DS_MLA_FP8.rowBytes;
    case "fp8_ds_v4": return dsV4PageBytes(pageSize);
    case "fp8_indexer": return indexerPageBytes(pageSize);
    default: return nopeElems + ropeElems;
  }
}

export interface QuantizedWrite {
  format: QuantizedFormat;
  /** Tile-scaled formats: the rule (default: the format's). */
  scaleRule?: ScaleRule;
  /** Flat formats: the per-tensor scale. */
  scale?: number;
  source: SourceFormat;
  /** The whole cache as it was before the write; modified in place. */
  cache: Uint8Array;
  /** Slots (row formats) or pages x pageSize (paged formats). */
  capacity: number;
  /** Bytes between rows (row formats) or pages (paged formats). */
  cacheRowStride: number;
  /** Tokens a page (paged formats only). */
  pageSize?: number;
  loc: readonly number[];
  /** Row i's element k at nope[i * nopeStride + k]; nopeElems used a row. */
  nope: Uint16Array;
  nopeStride: number;
  nopeElems: number;
  rope?: Uint16Array;
  ropeStride?: number;
  ropeElems: number;
  reservedSlot?: number | null;
}

/** What a write skipped for loc >= capacity: the count and the smallest row index (-1: none). */
export interface OutOfRange {
  count: number;
  first: number;
}

/** Applies the write to `w.cache` and returns what it skipped for loc >= capacity. */
export function referenceQuantizedWrite(w: QuantizedWrite): OutOfRange {
  const pageSize = w.pageSize ?? 0;
  if (isPaged(w.format) ? !(pageSize >= 1 && w.capacity % pageSize === 0) : pageSize !== 0) {
    throw new RangeError(`page size ${pageSize} does not fit format ${w.format} and capacity ${w.capacity}`);
  }
  const outOfRange: OutOfRange = { count: 0, first: -1 };
  const view = new DataView(w.cache.buffer, w.cache.byteOffset, w.cache.byteLength);
  w.loc.forEach((slot, i) => {
    if (slot < 0 || slot === w.reservedSlot) return;
    if (slot >= w.capacity) {
      if (outOfRange.count === 0 || i < outOfRange.first) outOfRange.first = i;
      outOfRange.count++;
      return;
    }
    const nope = w.nope.subarray(i * w.nopeStride, i * w.nopeStride + w.nopeElems);
    const rope = w.rope ? w.rope.subarray(i * w.ropeStride!, i * w.ropeStride! + w.ropeElems) : new Uint16Array(0);
    const page = isPaged(w.format) ? Math.floor(slot / pageSize) * w.cacheRowStride : 0;
    const token = slot % (pageSize || 1);
    switch (w.format) {
      case "fp8_e4m3":
      case "fp8_e5m2":
        w.cache.set(quantizeFlatRow(nope, rope, w.source, w.format === "fp8_e4m3" ? "e4m3" : "e5m2", w.scale!), slot * w.cacheRowStride);
        break;
      case "fp8_ds_mla":
        w.cache.set(quantizeDsMlaRow(nope, rope, w.source, w.scaleRule ?? DEFAULT_SCALE_RULE.fp8_ds_mla), slot * w.cacheRowStride);
        break;
      case "fp8_ds_v4": {
        const { row, scales } = quantizeDsV4Token(nope, rope, w.source);
        w.cache.set(row, page + token * DS_V4_FP8.tokenBytes);
        w.cache.set(scales, page + pageSize * DS_V4_FP8.tokenBytes + token * DS_V4_FP8.scaleWordBytes);
        break;
      }
      case "fp8_indexer": {
        const { values, scale } = quantizeIndexerToken(nope, w.source, w.scaleRule ?? DEFAULT_SCALE_RULE.fp8_indexer);
        w.cache.set(values, page + token * INDEXER_FP8.dim);
        view.setFloat32(page + pageSize * INDEXER_FP8.dim + token * INDEXER_FP8.scaleBytes, scale, true);
        break;
      }
    }
  });
  return outOfRange;
}

/**
 * The bytes of a cache that a write of `format` may touch: true where a slot's row (row formats)
 * or a token's row or scales (paged formats) lies; pad bytes, page padding and row tails beyond
 * the format's row stay false. For checking that untouched bytes keep their poison.
 */
export function definedBytes(format: QuantizedFormat, nopeElems: number, ropeElems: number, capacity: number, cacheRowStride: number, pageSize = 0): Uint8Array {
  const rows = isPaged(format) ? capacity / pageSize : capacity;
  const mask = new Uint8Array(rows * cacheRowStride);
  for (let r = 0; r < rows; r++) {
    const base = r * cacheRowStride;
    if (format === "fp8_ds_v4") {
      mask.fill(1, base, base + pageSize * DS_V4_FP8.tokenBytes);
      const words = base + pageSize * DS_V4_FP8.tokenBytes;
      for (let t = 0; t < pageSize; t++) mask.fill(1, words + t * DS_V4_FP8.scaleWordBytes, words + t * DS_V4_FP8.scaleWordBytes + DS_V4_FP8.tiles);
    } else {
      mask.fill(1, base, base + formatRowBytes(format, nopeElems, ropeElems, pageSize));
    }
  }
  return mask;
}
