/**
 * One quantizing write as a test case, independent of who performs it: the sources (nope and rope
 * as column ranges of one wider row, as an engine slices its projection output), the loc (unique
 * slots, padding rows, the reserved slot, loc past the capacity), a poisoned cache, and the bytes
 * and out-of-range count the reference says the write must leave. The CPU tests run it through
 * the C ABI's host fixture, the GPU suite through setMlaKvBuffer.
 */
import { DS_MLA_FP8, type ScaleRule, type SourceFormat } from "./fp8_reference.ts";
import { definedBytes, FORMAT_PARTS, formatRowBytes, isPaged, referenceQuantizedWrite, type OutOfRange, type QuantizedFormat } from "./fp8_cache_reference.ts";
import { sourceRow } from "./fp8_sources.ts";
import { POISON, type Rng } from "./gpu.ts";

export interface CaseShape {
  format: QuantizedFormat;
  /** Tile-scaled formats; absent: the format's default. */
  scaleRule?: ScaleRule;
  /** Flat formats: the per-tensor scale. */
  scale?: number;
  source: SourceFormat;
  n: number;
  loc: "i32" | "i64";
  /** Paged formats: tokens a page. Row formats: 0. */
  pageSize: number;
  /** Extra elements of source row stride: > 0 makes strided views (and, when odd, unaligned ones). */
  sourcePad: number;
  /** Extra bytes of cache row (row formats) or page (paged formats). */
  cachePad: number;
  reservedSlot: number | null;
  /** Two rows whose loc is past the capacity (n > 6). */
  outOfRange?: boolean;
  /** Flat formats only; default 512 + 64. */
  parts?: [number, number];
  /** Every row by this recipe of sourceRow (default: each row's own random one). */
  recipe?: number;
}

export interface PreparedCase {
  shape: CaseShape;
  nopeElems: number;
  ropeElems: number;
  /** Slots of the cache: rows (row formats) or pages x pageSize. */
  capacity: number;
  /** Rows (row formats) or pages (paged formats) of the cache, and the bytes between them. */
  cacheRows: number;
  cacheRowStride: number;
  /** The sources: row i's nope at i * sourceStride, its rope at i * sourceStride + ropeStart. */
  sources: Uint16Array;
  sourceStride: number;
  ropeStart: number;
  loc: number[];
  /** The cache after the write, all of it (POISON where the write leaves it alone). */
  want: Uint8Array;
  outOfRange: OutOfRange;
  /** 1 where the format may write a byte; every 0 must keep its poison. */
  defined: Uint8Array;
}

export function partsOf(shape: CaseShape): [number, number] {
  if (shape.format === "fp8_e4m3" || shape.format === "fp8_e5m2") return shape.parts ?? [DS_MLA_FP8.nopeDim, DS_MLA_FP8.ropeDim];
  const [nope, rope] = FORMAT_PARTS[shape.format];
  return [nope, rope];
}

/** Builds the sources, loc and expected cache of one write. */
export function prepareCase(shape: CaseShape, rng: Rng): PreparedCase {
  const [nopeElems, ropeElems] = partsOf(shape);
  const unit = shape.pageSize || 16;
  const capacity = Math.ceil((shape.n + 48 + rng.below(32)) / unit) * unit;
  const cacheRowStride = formatRowBytes(shape.format, nopeElems, ropeElems, shape.pageSize) + shape.cachePad;
  const cacheRows = isPaged(shape.format) ? capacity / shape.pageSize : capacity;
  const sourceStride = nopeElems + ropeElems + shape.sourcePad;
  const ropeStart = nopeElems + shape.sourcePad;
  const sources = new Uint16Array(Math.max(1, shape.n * sourceStride));
  for (let i = 0; i < shape.n; ++i) {
    sources.set(sourceRow(rng, nopeElems, shape.source, shape.recipe), i * sourceStride);
    sources.set(sourceRow(rng, ropeElems, shape.source, shape.recipe), i * sourceStride + ropeStart);
  }
  const loc = rng.uniqueSlots(shape.n, capacity);
  if (shape.n > 4) {
    loc[1] = -1;
    loc[3] = -7;
    if (shape.reservedSlot !== null) loc[2] = shape.reservedSlot;
  }
  if (shape.outOfRange && shape.n > 6) {
    loc[5] = capacity + rng.below(3);
    loc[4] = 3 * capacity;
  }
  const want = new Uint8Array(cacheRows * cacheRowStride).fill(POISON);
  const outOfRange = referenceQuantizedWrite({
    format: shape.format,
    scaleRule: shape.scaleRule,
    scale: shape.scale,
    source: shape.source,
    cache: want,
    capacity,
    cacheRowStride,
    pageSize: shape.pageSize,
    loc,
    nope: sources,
    nopeStride: sourceStride,
    nopeElems,
    rope: sources.subarray(ropeStart),
    ropeStride: sourceStride,
    ropeElems,
    reservedSlot: shape.reservedSlot,
  });
  const defined = definedBytes(shape.format, nopeElems, ropeElems, capacity, cacheRowStride, shape.pageSize);
  return { shape, nopeElems, ropeElems, capacity, cacheRows, cacheRowStride, sources, sourceStride, ropeStart, loc, want, outOfRange, defined };
}

/** How many bytes the format must not write (pad bytes, page padding, row tails) lost their poison. */
export function poisonLost(c: PreparedCase, got: Uint8Array): number {
  let lost = 0;
  for (let b = 0; b < got.length; ++b) if (c.defined[b] === 0 && got[b] !== POISON) lost++;
  return lost;
}

export function describeCase(s: CaseShape): string {
  const parts = s.parts ? ` ${s.parts.join("+")}` : "";
  const rule = s.scaleRule ? ` (${s.scaleRule})` : s.scale !== undefined ? ` scale ${s.scale}` : "";
  const page = s.pageSize ? `, page ${s.pageSize}` : "";
  return `${s.format}${parts}${rule} from ${s.source}, n=${s.n}, ${s.loc} loc${page}, source pad ${s.sourcePad}, cache pad ${s.cachePad}, reserved ${s.reservedSlot}${s.outOfRange ? ", loc past capacity" : ""}${s.recipe !== undefined ? `, recipe ${s.recipe}` : ""}`;
}
