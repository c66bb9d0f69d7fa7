/**
 * Choosing a kernel configuration for a write of n rows.
 *
 * The choice depends on n (launch shape matters most for small batches) and on whether the TMA
 * path is allowed for this call (alignment and GPU). It is made per call on the decode hot path,
 * so all work happens when a table is built and `dispatch` is a lookup: bucket n by powers of two,
 * read one entry.
 *
 * @module
 */

import { invalidArgument } from "../ffi/errors.ts";
import { isQuantized, type SourceDtype, type WriteFormat } from "./write_format.ts";

/** A write path of the kernel: plain vector copies, or TMA bulk stores (sm_90+). */
export type Path = "vector" | "tma";

/** Warps per block the kernel can be launched with. */
export type Warps = 1 | 2 | 4 | 8 | 16;

/** Rows each warp copies. */
export type RowsPerWarp = 1 | 2 | 4;

/** One kernel configuration. */
export interface LaunchConfig {
  readonly path: Path;
  readonly warps: Warps;
  readonly rowsPerWarp: RowsPerWarp;
}

/** The configurations of one bucket of n. */
export interface DispatchEntry {
  /** The fastest configuration, of any path. */
  readonly best: LaunchConfig;
  /** The fastest configuration of the vector path, used when TMA is not allowed for a call. */
  readonly vector: LaunchConfig;
}

/** One entry per bucket of n, indexed by {@link bucketOf}; {@link BUCKET_COUNT} entries. */
export type DispatchTable = readonly DispatchEntry[];

/** Number of buckets: 0 (n = 1) through 17 (n in (65536, 131072], and every larger n). */
export const BUCKET_COUNT = 18;

/** The valid warps-per-block values. */
export const WARPS: readonly Warps[] = [1, 2, 4, 8, 16];

/** The valid rows-per-warp values. */
export const ROWS_PER_WARP: readonly RowsPerWarp[] = [1, 2, 4];

const LAST_BUCKET = BUCKET_COUNT - 1;
const LARGEST_BUCKETED_N = 2 ** LAST_BUCKET;

/**
 * The bucket of a batch of `n` rows: ceil(log2(n)), so bucket 0 is n = 1 and bucket k covers
 * (2^(k-1), 2^k]. n = 0 maps to bucket 0 (nothing is launched for it anyway), and every n past
 * 131072 to the last bucket, where launch overhead no longer changes the choice.
 */
export function bucketOf(n: number): number {
  if (!(n >= 0) || !Number.isSafeInteger(n)) throw invalidArgument("n", `expected a row count (an integer >= 0), got ${n}`);
  if (n <= 1) return 0;
  if (n > LARGEST_BUCKETED_N) return LAST_BUCKET;
  return 32 - Math.clz32(n - 1);
}

/** The largest n of bucket `bucket` (2^bucket). */
export function bucketUpperBound(bucket: number): number {
  return 2 ** bucket;
}

/**
 * The configuration for a write of `n` rows. When `tmaAllowed` is false (sources or cache not
 * 16-byte aligned, or the GPU lacks TMA) the bucket's best vector configuration is returned.
 */
export function dispatch(table: DispatchTable, n: number, tmaAllowed: boolean): LaunchConfig {
  const entry = table[Math.min(bucketOf(n), table.length - 1)];
  if (entry === undefined) throw invalidArgument("table", "expected a dispatch table with at least one entry, got an empty one");
  return tmaAllowed ? entry.best : entry.vector;
}

const SMALL_BATCH: LaunchConfig = Object.freeze({ path: "vector", warps: 4, rowsPerWarp: 1 });
const LARGE_BATCH_VECTOR: LaunchConfig = Object.freeze({ path: "vector", warps: 8, rowsPerWarp: 2 });
const LARGE_BATCH_TMA: LaunchConfig = Object.freeze({ path: "tma", warps: 8, rowsPerWarp: 1 });

/** Where the built-in rule switches from the small-batch to the large-batch configuration. */
export const BUILTIN_LARGE_BATCH_N = 768;

/**
 * The built-in rule, used until a GPU has been autotuned: below n = 768, vector with 4 warps and
 * 1 row per warp; from n = 768, TMA with 8 warps on sm_90+ and otherwise vector with 8 warps and
 * 2 rows per warp.
 *
 * Buckets cannot split at 768 (it lies inside bucket 10, n in (512, 1024]), so each bucket takes
 * what the rule gives for its largest n: bucket 10 already uses the large-batch configuration.
 */
export function builtinTable(ccMajor: number): DispatchTable {
  const table: DispatchEntry[] = [];
  for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
    const large = bucketUpperBound(bucket) >= BUILTIN_LARGE_BATCH_N;
    const vector = large ? LARGE_BATCH_VECTOR : SMALL_BATCH;
    const best = large && ccMajor >= 9 ? LARGE_BATCH_TMA : vector;
    table.push(Object.freeze({ best, vector }));
  }
  return Object.freeze(table);
}

/** The parts of a write's layout that change which configuration is fastest. */
export interface LayoutKeyInput {
  /** Bytes of each source row's nope part (for a copy, also the bytes it takes in the cache). */
  readonly nopeBytes: number;
  /** Bytes of each source row's rope part. */
  readonly ropeBytes: number;
  readonly locBytes: number;
  /** How the row is stored; default `"copy"`. */
  readonly format?: WriteFormat;
  /** The sources' element type, for quantizing formats. */
  readonly sourceDtype?: SourceDtype | null;
}

/**
 * A stable name for a row layout; dispatch tables are tuned and stored per layout key.
 * A copy is named by its bytes, whatever the dtype: `"1024+128/i64"` for 1024 nope bytes, 128
 * rope bytes and int64 loc. A quantizing write is named by format, source dtype and elements:
 * `"fp8_ds_mla<bf16:512+64/i64"`.
 */
export function layoutKey({ nopeBytes, ropeBytes, locBytes, format, sourceDtype }: LayoutKeyInput): string {
  if (!isQuantized(format)) return `${nopeBytes}+${ropeBytes}/i${locBytes * 8}`;
  return `${format}<${sourceDtype ?? "bf16"}:${nopeBytes / 2}+${ropeBytes / 2}/i${locBytes * 8}`;
}
