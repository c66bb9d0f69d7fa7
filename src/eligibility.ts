/**
 * Which path may run a write: one predicate per path, the TypeScript mirror of the library's own
 * (mla_kv_path_blocker in cuda/checks.h, which the host fixture compiles too; a test runs one table
 * of cases through both). Dispatch uses it so that the automatic choice never picks what the
 * library refuses, the tuner uses it to decide what to time, and forced paths use it to refuse
 * with a reason before anything is launched.
 *
 * @module
 */

import { SPECIALIZED_ROW_BYTES, isPaged, isQuantized, type LaunchConfig, type Path, type WriteFormat } from "./vocabulary.ts";

/** What a path's eligibility depends on about the GPU. */
export interface DeviceFacts {
  readonly ccMajor: number;
  /** Shared memory a block may opt into, in bytes. */
  readonly smemPerBlockOptin: number;
}

/** What a path's eligibility depends on about the write. */
export interface WriteGeometry {
  readonly format: WriteFormat;
  /** Bytes each cache row receives (a paged format: a token's row in its page). */
  readonly rowBytes: number;
  /**
   * The largest power of two up to 16 dividing every address, stride and size the path reads or
   * writes: for a copy, the cache, nope and rope addresses (a part of 0 bytes does not count), their
   * row strides and the nope and rope sizes; for a quantizing write, the cache address, its row
   * stride and the row size (its sources are read into registers whatever their alignment).
   */
  readonly alignment: 1 | 2 | 4 | 8 | 16;
}

/** Bytes of shared memory the TMA path stages per warp row: 128-byte aligned buffers. */
const TMA_STAGE_ALIGN = 128;
/** Buffers per warp on the TMA path: one read by the copy engine while the next is filled. */
const TMA_STAGES = 2;

/** Dynamic shared memory a TMA block of `warps` warps needs for rows of `rowBytes`. */
export function tmaSharedBytes(warps: number, rowBytes: number): number {
  return warps * TMA_STAGES * Math.ceil(rowBytes / TMA_STAGE_ALIGN) * TMA_STAGE_ALIGN;
}

/** Warps a spread block of one row takes: its vectors, 32 to a warp; null when not specialized. */
export function spreadWarps(rowBytes: number): number | null {
  const width = SPECIALIZED_ROW_BYTES[rowBytes];
  return width === undefined ? null : Math.ceil(rowBytes / width / 32);
}

/** The largest power of two up to 16 that divides every value. */
export function alignmentOf(values: readonly number[]): 1 | 2 | 4 | 8 | 16 {
  let bits = 0;
  // Addresses pass 2^32, so the low bits are taken before OR-ing (| works on 32-bit integers).
  for (const v of values) bits |= v % 16;
  return bits % 16 === 0 ? 16 : bits % 8 === 0 ? 8 : bits % 4 === 0 ? 4 : bits % 2 === 0 ? 2 : 1;
}

/** The row sizes with specialized kernels, as {@link blocker} lists them (SPECIALIZED_ROW_BYTES is frozen). */
const SPECIALIZED_ROW_SIZES = Object.keys(SPECIALIZED_ROW_BYTES).join(", ");

/** What {@link blocker} returns for a refusal when it is not asked why: no message is built. */
const BLOCKED = "blocked";

/**
 * The rules, written once: null when `config` can run this write on this GPU, else the reason
 * when `explain` is true and {@link BLOCKED} when it is false (the hot path only asks whether).
 */
function blocker(config: LaunchConfig, device: DeviceFacts, write: WriteGeometry, explain: boolean): string | null {
  switch (config.path) {
    case "vector":
      return config.warps === 0 ? "the vector path needs warps 1, 2, 4, 8 or 16" : null;
    case "tma": {
      if (device.ccMajor < 9) return explain ? `the TMA path needs sm_90 or newer; this GPU is sm_${device.ccMajor}x` : BLOCKED;
      if (isPaged(write.format)) return explain ? `the TMA path writes whole rows; a ${write.format} page is not one` : BLOCKED;
      if (write.alignment < 16) {
        if (!explain) return BLOCKED;
        const what = isQuantized(write.format) ? "the cache address, its row stride and the row size" : "every address, row stride and row size";
        return `the TMA path needs ${what} to be multiples of 16 bytes; this write is aligned to ${write.alignment}`;
      }
      if (config.warps === 0) return "the TMA path needs warps 1, 2, 4, 8 or 16";
      const smem = tmaSharedBytes(config.warps, write.rowBytes);
      if (smem > device.smemPerBlockOptin) {
        return explain
          ? `the TMA path would stage ${smem} bytes of shared memory per block (${config.warps} warps x ${TMA_STAGES} rows of ${write.rowBytes} bytes); the device allows ${device.smemPerBlockOptin}`
          : BLOCKED;
      }
      return null;
    }
    case "specialized":
    case "spread": {
      if (write.format !== "copy") return explain ? `the ${config.path} path copies rows; a ${write.format} write converts them` : BLOCKED;
      const width = SPECIALIZED_ROW_BYTES[write.rowBytes];
      if (width === undefined) {
        return explain ? `the ${config.path} path has kernels for rows of ${SPECIALIZED_ROW_SIZES} bytes; this row has ${write.rowBytes}` : BLOCKED;
      }
      if (write.alignment < width) {
        return explain
          ? `the ${config.path} path for ${write.rowBytes}-byte rows needs every address, row stride and row size to be multiples of ${width} bytes; this write is aligned to ${write.alignment}`
          : BLOCKED;
      }
      if (config.path === "spread" && config.warps !== 0) {
        return explain
          ? `the spread path sizes its blocks by the row (${spreadWarps(write.rowBytes)} warps for ${write.rowBytes} bytes); pass warps 0, not ${config.warps}`
          : BLOCKED;
      }
      if (config.path === "specialized" && config.warps === 0) return "the specialized path needs warps 1, 2, 4, 8 or 16";
      return null;
    }
  }
}

/**
 * Why `config` cannot run this write on this GPU, or null when it can. The rules, exactly as the
 * library checks them:
 * - `vector`: always.
 * - `tma`: sm_90+, a row format, 16-byte alignment, and 2 × 128-byte-rounded rows per warp of
 *   shared memory within the device's opt-in limit.
 * - `specialized`: a copy whose row size has kernels ({@link SPECIALIZED_ROW_BYTES}) and whose
 *   alignment is at least that size's vector width.
 * - `spread`: as specialized, with warps 0: its blocks are as wide as the row ({@link spreadWarps}).
 */
export function pathBlocker(config: LaunchConfig, device: DeviceFacts, write: WriteGeometry): string | null {
  return blocker(config, device, write, true);
}

/** True when `config` can run this write on this GPU ({@link pathBlocker}'s rules, no message built). */
export function pathMayRun(config: LaunchConfig, device: DeviceFacts, write: WriteGeometry): boolean {
  return blocker(config, device, write, false) === null;
}

/** The paths that can run this write with some launch shape, in {@link Path} order. */
export function runnablePaths(paths: readonly Path[], device: DeviceFacts, write: WriteGeometry): Path[] {
  return paths.filter((path) => pathMayRun({ path, warps: path === "spread" ? 0 : 1, rowsPerWarp: 1 }, device, write));
}
