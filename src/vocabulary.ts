/**
 * The words of mla-kv, each defined once: write paths, launch shapes, formats, scale rules, source
 * dtypes and batch-size buckets. Lists that mirror the C ABI are derived from ffi/abi.ts's
 * name-to-code maps, so a path or format added to the header is added here by that one edit; the
 * zod schemas of autotune/profile.ts are built from these lists, and so are the checks of the
 * public options.
 *
 * @module
 */

import { MLA_KV_FORMAT_CODES, MLA_KV_PATH_CODES, MLA_KV_SCALE_RULE_CODES, MLA_KV_SOURCE_CODES } from "../ffi/abi.ts";

/** A non-empty readonly tuple of the keys of `codes`, in declaration order (what z.enum takes). */
function namesOf<K extends string>(codes: Readonly<Record<K, number>>): readonly [K, ...K[]] {
  return Object.freeze(Object.keys(codes)) as unknown as readonly [K, ...K[]];
}

/**
 * A kernel design of the write:
 * - `"vector"`: the generic register copy, any row size and alignment;
 * - `"specialized"`: the register copy compiled for one row size (see {@link SPECIALIZED_ROW_BYTES});
 * - `"spread"`: one block a row, one vector a thread (the small-n design), the same sizes;
 * - `"tma"`: shared-memory staging and bulk stores (sm_90+, 16-byte alignment).
 */
export type Path = keyof typeof MLA_KV_PATH_CODES;
export const PATHS = namesOf(MLA_KV_PATH_CODES);

/** Warps per block a launch may have. */
export const WARPS = Object.freeze([1, 2, 4, 8, 16] as const);
export type Warps = (typeof WARPS)[number];

/** Rows each warp writes (for `"spread"`: rows each block writes). */
export const ROWS_PER_WARP = Object.freeze([1, 2, 4] as const);
export type RowsPerWarp = (typeof ROWS_PER_WARP)[number];

/**
 * One launch: a path and its shape. A `"spread"` block is as wide as its row (one vector a
 * thread), so its `warps` is 0: the row decides.
 */
export interface LaunchConfig {
  readonly path: Path;
  readonly warps: Warps | 0;
  readonly rowsPerWarp: RowsPerWarp;
}

/**
 * Bytes a cache row receives for which `"specialized"` and `"spread"` kernels are compiled, with
 * the vector width each needs (MLA_KV_SPECIALIZED_ROWS in the header): bf16 512+64, bf16 448+64,
 * u8 528+128, a DeepSeek V4 token with its scale word, fp8 512+64.
 */
export const SPECIALIZED_ROW_BYTES: Readonly<Record<number, 8 | 16>> = Object.freeze({
  1152: 16,
  1024: 16,
  656: 16,
  584: 8,
  576: 16,
});

/** The formats that quantize bf16/fp16 sources to fp8 in the write. */
export type QuantizedFormat = keyof typeof MLA_KV_FORMAT_CODES;
export const QUANTIZED_FORMATS = namesOf(MLA_KV_FORMAT_CODES);

/** How a write stores its rows: a byte copy, or one of the quantizing formats. */
export type WriteFormat = "copy" | QuantizedFormat;
export const WRITE_FORMATS: readonly [WriteFormat, ...WriteFormat[]] = Object.freeze(["copy", ...QUANTIZED_FORMATS]);

/** The formats whose cache is pages of several tokens (slot s: page s / pageSize, token s % pageSize). */
export type PagedFormat = "fp8_ds_v4" | "fp8_indexer";
export const PAGED_FORMATS: readonly PagedFormat[] = Object.freeze(["fp8_ds_v4", "fp8_indexer"] as const);

/**
 * What a caller may pass as `options.format`: `"fp8"` is the flat fp8 of the cache's own dtype
 * (fp8_e4m3 or fp8_e5m2), the tile-scaled formats are named.
 */
export const REQUESTED_FORMATS = Object.freeze(["copy", "fp8", "fp8_ds_mla", "fp8_ds_v4", "fp8_indexer"] as const);
export type RequestedFormat = (typeof REQUESTED_FORMATS)[number];

/** How a tile-scaled format computes its scales (see the README's fp8 section). */
export type ScaleRule = keyof typeof MLA_KV_SCALE_RULE_CODES;
export const SCALE_RULES = namesOf(MLA_KV_SCALE_RULE_CODES);

/** Each tile-scaled format's rules, its default first. */
export const FORMAT_SCALE_RULES: Readonly<Partial<Record<QuantizedFormat, readonly [ScaleRule, ...ScaleRule[]]>>> = Object.freeze({
  fp8_ds_mla: ["pow2", "amax"],
  fp8_ds_v4: ["pow2"],
  fp8_indexer: ["amax", "ue8m0"],
});

/** Element types a quantizing write reads. */
export type SourceDtype = keyof typeof MLA_KV_SOURCE_CODES;
export const SOURCE_DTYPES = namesOf(MLA_KV_SOURCE_CODES);

/** True for the formats that quantize. */
export function isQuantized(format: WriteFormat | undefined): format is QuantizedFormat {
  return format !== undefined && format !== "copy";
}

/** True for the formats whose cache is made of pages ({@link PAGED_FORMATS}). */
export function isPaged(format: WriteFormat | undefined): format is PagedFormat {
  return (PAGED_FORMATS as readonly (WriteFormat | undefined)[]).includes(format);
}

// ---- batch-size buckets ---------------------------------------------------------------------------

/**
 * Buckets of n tuned and dispatched on: bucket b covers n in (2^(b-1), 2^b], bucket 0 is n = 1,
 * and the last one, n in (32768, 65536], also serves every larger n, where launch shape no longer
 * changes which configuration wins.
 */
export const BUCKET_COUNT = 17;
export const LAST_BUCKET = BUCKET_COUNT - 1;

/** The bucket of a batch of `n` rows (n = 0 maps to bucket 0; nothing is launched for it). */
export function bucketOf(n: number): number {
  if (n <= 1) return 0;
  if (n > 2 ** LAST_BUCKET) return LAST_BUCKET;
  return 32 - Math.clz32(n - 1);
}

/** The n a bucket is tuned at: its largest, 2^bucket. */
export function bucketN(bucket: number): number {
  return 2 ** bucket;
}
