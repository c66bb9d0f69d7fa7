/**
 * The write: MLA rows (nope + rope parts) into their slots of a paged KV cache.
 *
 * @module
 */

import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import { deviceFacts, deviceInfo, requireSupportedArchitecture } from "./device.ts";
import { choose, entryFor } from "./dispatch.ts";
import { tableFor } from "./dispatch_tables.ts";
import { pathBlocker, pathMayRun, type DeviceFacts } from "./eligibility.ts";
import { launchWrite } from "./launch.ts";
import { planSetMlaKvBuffer, type PlanOptions, type SetMlaKvBufferPlan } from "./layout.ts";
import { captureInProgress, recordCapturedUses } from "./capture.ts";
import { Stream, streamHandleFor } from "./stream.ts";
import type { DeviceTensor } from "./tensor.ts";
import { isPlainObject, validateDevice, validateRequestedFormat } from "./validate.ts";
import {
  PATHS,
  ROWS_PER_WARP,
  SCALE_RULES,
  WARPS,
  type LaunchConfig,
  type Path,
  type RequestedFormat,
  type RowsPerWarp,
  type ScaleRule,
  type Warps,
} from "./vocabulary.ts";
import { validateReservedSlot, writeDefaults } from "./write_defaults.ts";

/** Options of {@link setMlaKvBuffer}. */
export interface SetMlaKvBufferOptions {
  /** Stream to launch on; default: the device's legacy default stream. */
  stream?: Stream;
  /**
   * `"auto"` (default) lets the dispatch table choose; `"vector"`, `"specialized"`, `"spread"` or
   * `"tma"` forces a kernel design, for benchmarks and for working around one. A forced path the
   * write cannot take (TMA before sm_90 or without 16-byte alignment, specialized or spread for a
   * row size they are not compiled for, ...) throws `UNSUPPORTED` with the reason.
   */
  path?: "auto" | Path;
  /** Forces warps per block (1, 2, 4, 8 or 16) instead of the dispatch table's choice (spread: none). */
  warps?: Warps;
  /** Forces rows per warp (1, 2 or 4; spread: rows a block) instead of the dispatch table's choice. */
  rowsPerWarp?: RowsPerWarp;
  /** Asserts that every tensor is on this device. */
  device?: number;
  /**
   * Programmatic dependent launch (sm_90+, ignored before): the write may start while the
   * previous kernel on the stream finishes, and waits on the GPU before its first read. Correct
   * whatever the neighbouring kernels do; inside a CUDA graph it saved 0.2–0.4 µs a call at
   * n <= 1024 on an H100 (bench/NOTES.md). Default: {@link writeDefaults}().pdl, initially true.
   */
  pdl?: boolean;
  /**
   * A slot that is never written, or null for none: a row whose loc equals it is skipped like
   * loc < 0. Engines pad CUDA-graph and data-parallel batches with a reserved slot (often 0) that
   * must keep finite contents. Must be below the cache's capacity. Default:
   * {@link writeDefaults}().reservedSlot, initially null.
   */
  reservedSlot?: number | null;
  /**
   * How rows are stored. Default: a byte copy when kNope and kRope have the cache's dtype, and
   * `"fp8"` when an fp8_e4m3/fp8_e5m2 cache gets bf16/fp16 sources.
   * - `"fp8"`: each element stored as fp8(x / scale), the cache's fp8 kind; needs `scale`.
   * - `"fp8_ds_mla"`: the DeepSeek V3.2 sparse-MLA row of 656 bytes (u8 or fp8_e4m3 cache, bf16/fp16
   *   sources of 512 + 64 elements): 512 e4m3, 4 fp32 tile scales computed in the write, 64 bf16.
   * - `"fp8_ds_v4"`: DeepSeek V4's paged cache, [pages, pageBytes] u8, from 448 + 64 elements; needs
   *   `pageSize`.
   * - `"fp8_indexer"`: the sparse-attention indexer's paged K cache from kNope [n, 128] (kRope
   *   omitted); needs `pageSize`.
   */
  format?: RequestedFormat;
  /** Tokens a page of a paged format's cache (fp8_ds_v4, fp8_indexer): a whole number >= 1. */
  pageSize?: number;
  /**
   * How a tile-scaled format computes its scales: fp8_ds_mla `"pow2"` (default, FlashMLA's rule)
   * or `"amax"`; fp8_indexer `"amax"` (default) or `"ue8m0"`; fp8_ds_v4 only `"pow2"`.
   */
  scaleRule?: ScaleRule;
  /**
   * The per-tensor scale of an `"fp8"` write: stored = x / scale (a finite number > 0, used as
   * fp32; 1 for none). Required there, refused elsewhere. Inside a captured graph the value is
   * the one at capture time.
   */
  scale?: number;
}

interface ReadOptions {
  stream: Stream | undefined;
  path: "auto" | Path;
  warps: Warps | undefined;
  rowsPerWarp: RowsPerWarp | undefined;
  device: number | undefined;
  pdl: boolean | undefined;
  /** undefined: the default's; null: none. */
  reservedSlot: number | null | undefined;
  format: RequestedFormat | undefined;
  scale: number | undefined;
  pageSize: number | undefined;
  scaleRule: ScaleRule | undefined;
}

const NO_OPTIONS: ReadOptions = Object.freeze({
  stream: undefined,
  path: "auto",
  warps: undefined,
  rowsPerWarp: undefined,
  device: undefined,
  pdl: undefined,
  reservedSlot: undefined,
  format: undefined,
  scale: undefined,
  pageSize: undefined,
  scaleRule: undefined,
});
const NO_PLAN_OPTIONS: PlanOptions = Object.freeze({});
const OPTION_NAMES = "stream, path, warps, rowsPerWarp, device, pdl, reservedSlot, format, scale, pageSize, scaleRule";
const PATH_NAMES: readonly string[] = ["auto", ...PATHS];
const quoted = (names: readonly string[]) => names.map((n) => `"${n}"`).join(", ");

// Checked by hand rather than with a schema library: this runs on every decode step, and the
// common call passes no options or just a stream. `undefined` values count as absent, so callers
// can write `{ stream: maybeStream }`.
function readOptions(options: unknown): ReadOptions {
  if (options === undefined) return NO_OPTIONS;
  if (!isPlainObject(options)) {
    throw invalidArgument("options", `expected a plain options object ({ … }), got ${describeValue(options)}`);
  }
  const read: ReadOptions = { ...NO_OPTIONS };
  for (const key in options) {
    const value: unknown = (options as Record<string, unknown>)[key];
    if (value === undefined) continue;
    switch (key) {
      case "stream":
        if (!(value instanceof Stream)) throw invalidArgument("options.stream", `expected a Stream, got ${describeValue(value)}`);
        read.stream = value;
        break;
      case "path":
        if (typeof value !== "string" || !PATH_NAMES.includes(value)) {
          throw invalidArgument("options.path", `expected one of ${quoted(PATH_NAMES)}, got ${describeValue(value)}`);
        }
        read.path = value as ReadOptions["path"];
        break;
      case "warps":
        if (!WARPS.includes(value as Warps)) throw invalidArgument("options.warps", `expected ${WARPS.join(", ")}, got ${describeValue(value)}`);
        read.warps = value as Warps;
        break;
      case "rowsPerWarp":
        if (!ROWS_PER_WARP.includes(value as RowsPerWarp)) {
          throw invalidArgument("options.rowsPerWarp", `expected ${ROWS_PER_WARP.join(", ")}, got ${describeValue(value)}`);
        }
        read.rowsPerWarp = value as RowsPerWarp;
        break;
      case "device":
        read.device = validateDevice(value, "options.device");
        break;
      case "pdl":
        if (typeof value !== "boolean") throw invalidArgument("options.pdl", `expected true or false, got ${describeValue(value)}`);
        read.pdl = value;
        break;
      case "reservedSlot":
        read.reservedSlot = validateReservedSlot(value, "options.reservedSlot");
        break;
      case "format":
        read.format = validateRequestedFormat(value, "options.format");
        break;
      case "pageSize":
        if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
          throw invalidArgument("options.pageSize", `expected the tokens a page (a whole number >= 1), got ${describeValue(value)}`);
        }
        read.pageSize = value;
        break;
      case "scaleRule":
        if (typeof value !== "string" || !(SCALE_RULES as readonly string[]).includes(value)) {
          throw invalidArgument("options.scaleRule", `expected one of ${quoted(SCALE_RULES)}, got ${describeValue(value)}`);
        }
        read.scaleRule = value as ScaleRule;
        break;
      case "scale":
        // Checked as the fp32 the kernel divides by: 1e-50 would become 0, 1e39 infinity.
        if (typeof value !== "number" || !(Math.fround(value) > 0) || !Number.isFinite(Math.fround(value))) {
          throw invalidArgument("options.scale", `expected a finite number > 0 that fp32 can hold (stored = x / scale), got ${describeValue(value)}`);
        }
        read.scale = value;
        break;
      default:
        throw invalidArgument(`options.${key}`, `unknown option; the options are ${OPTION_NAMES}`);
    }
  }
  return read;
}

/** Checks that `options` is valid for {@link setMlaKvBuffer} without running anything. */
export function validateSetMlaKvBufferOptions(options: unknown): void {
  readOptions(options);
}

/** The launch configuration for a plan: the dispatch table's, with forced options laid over it. */
export function chooseLaunchConfig(plan: SetMlaKvBufferPlan, options: SetMlaKvBufferOptions = {}): LaunchConfig {
  return chooseConfig(plan, readOptions(options));
}

function chooseConfig(plan: SetMlaKvBufferPlan, opts: ReadOptions): LaunchConfig {
  const facts = deviceFacts(plan.device);
  if (opts.path !== "auto") {
    // A forced path: its shape from the options, else the table's launch of that path, else 4 x 1.
    const fromTable = entryFor(tableFor(plan.device, plan, opts.stream), plan.n).find((c) => c.path === opts.path);
    const config: LaunchConfig = {
      path: opts.path,
      warps: opts.path === "spread" ? 0 : (opts.warps ?? (fromTable?.warps || 4)),
      rowsPerWarp: opts.rowsPerWarp ?? fromTable?.rowsPerWarp ?? 1,
    };
    if (opts.path === "spread" && opts.warps !== undefined) {
      throw invalidArgument("options.warps", "the spread path sizes its blocks by the row; it takes no warps");
    }
    refuseBlocked(config, plan, facts);
    return config;
  }
  const table = tableFor(plan.device, plan, opts.stream);
  if (opts.warps === undefined && opts.rowsPerWarp === undefined) {
    return choose(table, plan.n, (c) => pathMayRun(c, facts, plan));
  }
  // Forced shape, automatic path: the fastest path of the bucket that can take that shape.
  const shaped = (c: LaunchConfig): LaunchConfig => ({
    path: opts.warps !== undefined && c.path === "spread" ? "specialized" : c.path,
    warps: opts.warps ?? c.warps,
    rowsPerWarp: opts.rowsPerWarp ?? c.rowsPerWarp,
  });
  return shaped(choose(table, plan.n, (c) => pathMayRun(shaped(c), facts, plan)));
}

/** Throws UNSUPPORTED, naming the reason, when a forced launch cannot run this write on `facts`' GPU. */
function refuseBlocked(config: LaunchConfig, plan: SetMlaKvBufferPlan, facts: DeviceFacts): void {
  const why = pathBlocker(config, facts, plan);
  if (why === null) return;
  const info = deviceInfo(plan.device);
  throw new MlaKvError("UNSUPPORTED", `options.path "${config.path}": ${why} (device ${plan.device}, ${info.name}). Use path "auto".`, "options.path");
}

/**
 * Writes `n` MLA rows into a KV cache: for each i with `0 <= loc[i] < capacity`, cache row
 * `loc[i]` gets `kNope[i]` in its first `d_nope` columns and `kRope[i]` right after. Columns past
 * `d_nope + d_rope` are not touched. `loc[i] < 0` marks padding and is skipped, and so does
 * `options.reservedSlot`; `loc[i] >= capacity` is skipped and reported later by
 * {@link checkErrors} (also run by `Stream.synchronize()` and `DeviceTensor.download()`).
 *
 * Asynchronous: it only enqueues work on `options.stream` and returns, so it can be captured into
 * a CUDA graph. The copy is byte-exact, whatever the dtype.
 *
 * Quantize-on-write (one launch instead of a cast kernel, a temporary buffer and the scatter):
 * bf16/fp16 sources into an fp8_e4m3/fp8_e5m2 cache store fp8(x / options.scale); with
 * `format: "fp8_ds_mla"` a u8 cache of 656-byte rows gets DeepSeek's sparse-MLA layout, tile
 * scales included. The rounding, saturation and NaN rules are in the README.
 *
 * Shapes: `kvBuffer` [slots, W], [slots, 1, W] or [pages, pageSize, W] (slot = page * pageSize +
 * offset); `kNope` [n, d_nope] and `kRope` [n, d_rope] (or [n, 1, d]) of the cache's dtype, rows
 * may be strided; `loc` [n] int32 or int64. n = 0 launches nothing.
 *
 * @throws {MlaKvError} `INVALID_ARGUMENT` naming the argument or option; `DISPOSED` for a freed
 * tensor or destroyed stream; `UNSUPPORTED` for a forced path this call cannot use; `NO_DEVICE`,
 * `CUDA` from the driver; `LIBRARY_NOT_FOUND` when libmla_kv is missing.
 *
 * @example
 * ```ts
 * import { allocTensor, fromHost, setMlaKvBuffer, Stream } from "mla-kv";
 *
 * const n = 3;
 * using stream = Stream.create();
 * using kvBuffer = allocTensor("bf16", [64, 16, 576]); // 64 pages of 16 slots, 512 nope + 64 rope
 * using kNope = fromHost(new Uint16Array(n * 512).fill(0x3f80), "bf16", [n, 512]); // 1.0
 * using kRope = fromHost(new Uint16Array(n * 64).fill(0x4000), "bf16", [n, 64]); // 2.0
 * using loc = fromHost(new BigInt64Array([17n, 5n, -1n]), "i64", [n]); // -1: padding, skipped
 *
 * setMlaKvBuffer(kvBuffer, loc, kNope, kRope, { stream });
 * stream.synchronize(); // waits, then throws OUT_OF_RANGE_LOC if some loc was >= 1024
 * const cache = kvBuffer.download(); // Uint16Array; slot 17 = page 1, offset 1
 * console.log(cache[17 * 576], cache[17 * 576 + 512]); // 16256 (0x3f80), 16384 (0x4000)
 * ```
 */
export function setMlaKvBuffer(
  kvBuffer: DeviceTensor,
  loc: DeviceTensor,
  kNope: DeviceTensor,
  kRope: DeviceTensor | undefined,
  options?: SetMlaKvBufferOptions,
): void {
  const opts = readOptions(options);
  const plan = planSetMlaKvBuffer(
    kvBuffer,
    loc,
    kNope,
    kRope,
    opts.device === undefined && opts.format === undefined && opts.pageSize === undefined && opts.scaleRule === undefined
      ? NO_PLAN_OPTIONS
      : { device: opts.device, format: opts.format, pageSize: opts.pageSize, scaleRule: opts.scaleRule },
  );
  const stream = streamHandleFor(opts.stream, plan.device, "options.stream");
  const scale = checkScale(plan, opts.scale);
  const reservedSlot = reservedSlotFor(plan, opts.reservedSlot);
  if (plan.n === 0) return;
  const config = chooseConfig(plan, opts);
  // After every host-side check, so argument errors never depend on which GPU (if any) is there.
  requireSupportedArchitecture(plan.device);
  // A graph being captured replays these addresses: it keeps their memory alive until destroyed.
  if (captureInProgress()) recordCapturedUses(plan.device, stream, kRope === undefined ? [kvBuffer, loc, kNope] : [kvBuffer, loc, kNope, kRope]);
  launchWrite(plan, config, { stream, pdl: opts.pdl ?? writeDefaults().pdl, reservedSlot, scale });
}

/** The scale the C call gets: the caller's for a flat fp8 write (required), 1 (unused) otherwise. */
function checkScale(plan: SetMlaKvBufferPlan, scale: number | undefined): number {
  if (plan.format === "fp8_e4m3" || plan.format === "fp8_e5m2") {
    if (scale === undefined) {
      throw invalidArgument(
        "options.scale",
        `a ${plan.sourceDtype} → ${plan.format} write quantizes each element as x / scale; pass the per-tensor scale (1 for none)`,
      );
    }
    return scale;
  }
  if (scale !== undefined) {
    throw invalidArgument(
      "options.scale",
      plan.format !== "copy"
        ? `the ${plan.format} format computes a scale per tile; it takes no per-tensor scale`
        : "only an fp8 write (bf16/fp16 sources into an fp8_e4m3/fp8_e5m2 cache) takes a scale; this write copies bytes",
    );
  }
  return 1;
}

/** The slot to skip (-1 for none): the call's option, else the default; it must be a slot of the cache. */
function reservedSlotFor(plan: SetMlaKvBufferPlan, fromCall: number | null | undefined): number {
  const slot = fromCall === undefined ? writeDefaults().reservedSlot : fromCall;
  if (slot === null) return -1;
  if (slot >= plan.capacity) {
    const argument = fromCall === undefined ? "defaults.reservedSlot" : "options.reservedSlot";
    throw invalidArgument(argument, `expected a slot of kvBuffer (below its capacity ${plan.capacity}), got ${slot}`);
  }
  return slot;
}
