/**
 * Choosing a launch for a write of n rows: a pure lookup on the decode hot path.
 *
 * A dispatch table holds, per bucket of n (see vocabulary.ts), the launches worth making, fastest
 * first: one per path that was measured, ending with a vector launch, which every write can take.
 * A call takes the first its write may run (eligibility.ts): a misaligned call or a row size with
 * no specialized kernels falls through to the next, so a table serves every call of its layout.
 *
 * @module
 */

import { bucketOf, BUCKET_COUNT, bucketN, type LaunchConfig } from "./vocabulary.ts";

/** A bucket's launches, fastest first; the last one uses the vector path. */
export type DispatchEntry = readonly LaunchConfig[];

/** One entry per bucket of n, {@link BUCKET_COUNT} of them. */
export type DispatchTable = readonly DispatchEntry[];

/** The launches of the bucket of `n` rows. */
export function entryFor(table: DispatchTable, n: number): DispatchEntry {
  return table[Math.min(bucketOf(n), table.length - 1)]!;
}

/** The launch for `n` rows: the first of its bucket's that `mayRun` accepts, else the last. */
export function choose(table: DispatchTable, n: number, mayRun: (config: LaunchConfig) => boolean): LaunchConfig {
  const entry = entryFor(table, n);
  for (let i = 0; i < entry.length - 1; i++) if (mayRun(entry[i]!)) return entry[i]!;
  return entry[entry.length - 1]!;
}

const freeze = (path: LaunchConfig["path"], warps: LaunchConfig["warps"], rowsPerWarp: LaunchConfig["rowsPerWarp"]): LaunchConfig =>
  Object.freeze({ path, warps, rowsPerWarp });

/** Up to this n the built-in rule tries the spread design first. */
export const BUILTIN_SPREAD_MAX_N = 32;
/** From above this n the built-in rule uses 8-warp blocks. */
export const BUILTIN_LARGE_BATCH_N = 512;

/**
 * The built-in rule, used until a GPU has been tuned (and where tuning is off or failed), from the
 * H200 lab runs of bench/NOTES.md: spread up to n = 32, then specialized with 4 warps, from
 * n = 1024 with 8; rows without specialized kernels take the vector path (4 warps, then 8 warps
 * × 2 rows), or TMA with 8 warps from n = 1024 where it can run.
 */
export function builtinTable(): DispatchTable {
  const table: DispatchEntry[] = [];
  for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
    const n = bucketN(bucket);
    const entry =
      n <= BUILTIN_SPREAD_MAX_N
        ? [freeze("spread", 0, 1), freeze("specialized", 4, 1), freeze("vector", 4, 1)]
        : n <= BUILTIN_LARGE_BATCH_N
          ? [freeze("specialized", 4, 1), freeze("vector", 4, 1)]
          : [freeze("specialized", 8, 1), freeze("tma", 8, 1), freeze("vector", 8, 2)];
    table.push(Object.freeze(entry));
  }
  return Object.freeze(table);
}
