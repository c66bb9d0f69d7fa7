/**
 * `autotune()`: tunes chosen layouts on a GPU now, for an engine's start-up, before it allocates
 * its KV pool (the tuner then has the memory it likes; a first write on a full card still tunes,
 * within what is free). Profiles go where first use reads them, so the writes that follow only
 * look their tables up. `bun run autotune` is the same verb from the command line.
 *
 * @module
 */

import { MlaKvError } from "../ffi/errors.ts";
import { clearTables } from "../src/dispatch_tables.ts";
import { dtypeBytes, type DType } from "../src/dtypes.ts";
import { layoutKey, type WriteLayout } from "../src/layout_key.ts";
import { validateDevice } from "../src/validate.ts";
import {
  FORMAT_SCALE_RULES,
  isPaged,
  QUANTIZED_FORMATS,
  type QuantizedFormat,
  type ScaleRule,
  type SourceDtype,
} from "../src/vocabulary.ts";
import { quantizedShapeProblem } from "../src/write_format.ts";
import { gpuIdentity } from "./identity.ts";
import { defaultLookup, type Warn } from "./lookup.ts";
import type { LayoutProfile } from "./profile.ts";
import type { TuneMethod } from "./search.ts";
import { tuneOnDevice } from "./tune.ts";

/** The element types a row's sources may have (and a copy's cache). */
export const ROW_DTYPES = ["bf16", "fp16", "u8", "fp8_e4m3", "fp8_e5m2"] as const;
export type RowDType = (typeof ROW_DTYPES)[number];

/** A layout to tune, as a caller names it: the sources' dtype and elements, and the format. */
export interface LayoutSpec {
  /** The sources' dtype (and a copy's cache dtype). */
  readonly dtype: RowDType;
  /** Elements of each kNope and kRope row. */
  readonly nope: number;
  readonly rope: number;
  /** A quantizing format; absent for a copy. */
  readonly format?: QuantizedFormat;
  /** The format's scale rule; default its own. */
  readonly scaleRule?: ScaleRule;
  /** Tokens a page, for the paged formats. */
  readonly pageSize?: number;
}

/** The largest row the tuner times: larger rows are not MLA rows. */
export const MAX_ROW_BYTES = 65536;

/**
 * `dtype:nope+rope[:format[.rule][@pageSize]]`, e.g. `bf16:512+64`, `bf16:512+64:fp8_ds_mla.amax`,
 * `bf16:448+64:fp8_ds_v4@64`; throws a RangeError whose message is one sentence.
 */
export function parseLayoutSpec(spec: string): LayoutSpec {
  const m = /^([a-z0-9_]+):([0-9]{1,9})\+([0-9]{1,9})(?::([a-z0-9_]+)(?:\.([a-z0-9]+))?(?:@([0-9]{1,9}))?)?$/.exec(spec);
  if (m === null) {
    throw new RangeError(`${JSON.stringify(spec)} is not dtype:nope+rope[:format[.rule][@pageSize]], e.g. bf16:512+64 or bf16:448+64:fp8_ds_v4@64`);
  }
  return checkLayoutSpec({
    dtype: m[1] as RowDType,
    nope: Number(m[2]),
    rope: Number(m[3]),
    ...(m[4] === undefined ? {} : { format: m[4] as QuantizedFormat }),
    ...(m[5] === undefined ? {} : { scaleRule: m[5] as ScaleRule }),
    ...(m[6] === undefined ? {} : { pageSize: Number(m[6]) }),
  }, JSON.stringify(spec));
}

/** Checks a spec's parts; throws a RangeError naming `what` and the part at fault. */
export function checkLayoutSpec(spec: LayoutSpec, what = "layout"): LayoutSpec {
  if (!(ROW_DTYPES as readonly string[]).includes(spec.dtype)) throw new RangeError(`${what}: dtype ${spec.dtype} is not one of ${ROW_DTYPES.join(", ")}`);
  if (!Number.isSafeInteger(spec.nope) || !Number.isSafeInteger(spec.rope) || spec.nope < 0 || spec.rope < 0 || spec.nope + spec.rope === 0) {
    throw new RangeError(`${what}: nope and rope are element counts >= 0 with a positive sum`);
  }
  if (spec.format === undefined) {
    if (spec.scaleRule !== undefined || spec.pageSize !== undefined) throw new RangeError(`${what}: a copy takes no scale rule or page size`);
    const bytes = (spec.nope + spec.rope) * dtypeBytes(spec.dtype as DType);
    if (bytes > MAX_ROW_BYTES) throw new RangeError(`${what}: a row of ${bytes} bytes is more than the ${MAX_ROW_BYTES} the tuner times`);
    return spec;
  }
  if (!(QUANTIZED_FORMATS as readonly string[]).includes(spec.format)) throw new RangeError(`${what}: format ${spec.format} is not one of ${QUANTIZED_FORMATS.join(", ")}`);
  if (spec.dtype !== "bf16" && spec.dtype !== "fp16") throw new RangeError(`${what}: a ${spec.format} write quantizes bf16 or fp16 sources, not ${spec.dtype}`);
  const problem = quantizedShapeProblem(spec.format, spec.nope, spec.rope);
  if (problem !== null) throw new RangeError(`${what}: ${problem}`);
  const rules = FORMAT_SCALE_RULES[spec.format];
  if (spec.scaleRule !== undefined && (rules === undefined || !rules.includes(spec.scaleRule))) {
    throw new RangeError(`${what}: ${spec.format} takes ${rules === undefined ? "no scale rule" : `scale rule ${rules.join(" or ")}`}, not ${spec.scaleRule}`);
  }
  if (isPaged(spec.format) !== (spec.pageSize !== undefined)) {
    throw new RangeError(`${what}: ${isPaged(spec.format) ? `a ${spec.format} cache is paged; add @pageSize` : `${spec.format} is not paged; it takes no page size`}`);
  }
  if (spec.pageSize !== undefined && (!Number.isSafeInteger(spec.pageSize) || spec.pageSize < 1)) throw new RangeError(`${what}: the page size is a whole number >= 1`);
  return spec;
}

/** The name a spec is written with (what parseLayoutSpec reads). */
export function specName(spec: LayoutSpec): string {
  const format = spec.format === undefined ? "" : `:${spec.format}${spec.scaleRule === undefined ? "" : `.${spec.scaleRule}`}${spec.pageSize === undefined ? "" : `@${spec.pageSize}`}`;
  return `${spec.dtype}:${spec.nope}+${spec.rope}${format}`;
}

/** The layout a spec writes with `locBytes` loc: what dispatch keys its table by. */
export function layoutOfSpec(spec: LayoutSpec, locBytes: 4 | 8): WriteLayout {
  const w = dtypeBytes(spec.dtype as DType);
  const quantized = spec.format !== undefined;
  return {
    format: spec.format ?? "copy",
    sourceDtype: quantized ? (spec.dtype as SourceDtype) : null,
    nopeBytes: spec.nope * w,
    ropeBytes: spec.rope * w,
    locBytes,
    pageSize: spec.pageSize ?? 0,
    scaleRule: quantized ? (spec.scaleRule ?? FORMAT_SCALE_RULES[spec.format!]?.[0] ?? null) : null,
  };
}

/** The loc widths (bytes) `loc` names, i32 first; undefined when it is not "i32", "i64" or "both". */
export function locWidths(loc: unknown): Array<4 | 8> | undefined {
  return loc === "i32" ? [4] : loc === "i64" ? [8] : loc === "both" ? [4, 8] : undefined;
}

/** One distinct layout of a tune, and the specs written with it. */
export interface SpecLayout {
  readonly key: string;
  readonly layout: WriteLayout;
  /** The specs written with this layout, in order (repeats included); complete once the iteration ends. */
  readonly specs: LayoutSpec[];
}

/**
 * The distinct layouts of `specs` written with each of `locs` (every spec with the first loc, then
 * with the next), one per layout key, in the order first met. Lazy: each next one is worked out
 * only when asked for.
 */
export function* specLayouts(specs: readonly LayoutSpec[], locs: readonly (4 | 8)[]): Generator<SpecLayout, void, undefined> {
  const seen = new Map<string, SpecLayout>();
  for (const locBytes of locs) {
    for (const spec of specs) {
      const layout = layoutOfSpec(spec, locBytes);
      const key = layoutKey(layout);
      const met = seen.get(key);
      if (met !== undefined) {
        met.specs.push(spec);
        continue;
      }
      const entry: SpecLayout = { key, layout, specs: [spec] };
      seen.set(key, entry);
      yield entry;
    }
  }
}

/** Options of {@link autotune}. */
export interface AutotuneOptions {
  /** CUDA device; default 0. */
  device?: number;
  /** What to tune: specs or their names (`"bf16:512+64"`, `"bf16:512+64:fp8_ds_mla"`). */
  layouts: readonly (LayoutSpec | string)[];
  /** loc dtypes to tune each layout for; default both. */
  loc?: "i32" | "i64" | "both";
  /** Tune again where a profile already exists. */
  force?: boolean;
  /** Default "search". */
  method?: TuneMethod;
  /** Progress of each layout's tune. */
  onProgress?: (progress: { layoutKey: string; done: number; total: number; label: string }) => void;
  /** Warnings (an unwritable cache dir, a busy lock); default console.warn. */
  warn?: Warn;
}

/** What {@link autotune} did for one layout. */
export interface AutotuneOutcome {
  readonly layoutKey: string;
  /** "tuned" now, or where an existing profile came from. */
  readonly source: "tuned" | "memory" | "user" | "bundled" | "none";
  readonly profile: LayoutProfile | null;
  /** The user profile file it is (or would be) stored in. */
  readonly path: string;
  /** Whether a tune reached the file (false: kept in memory for this process). */
  readonly persisted?: boolean;
}

/**
 * Tunes `layouts` on `options.device` now (each for int32 and int64 loc unless `loc` says one),
 * unless a profile for it exists (`force` tunes again). Explicit, so it tunes even with
 * MLA_KV_AUTOTUNE=0. Processes of one GPU model take turns on the tune lock, as at first use.
 *
 * @example
 * ```ts
 * import { autotune } from "mla-kv";
 * // At start-up, before the KV pool is allocated:
 * autotune({ device: 0, layouts: ["bf16:512+64", "bf16:512+64:fp8_ds_mla"], loc: "i64" });
 * ```
 * @throws {MlaKvError} INVALID_ARGUMENT for a bad layout or option; NO_DEVICE, CUDA from the GPU.
 */
export function autotune(options: AutotuneOptions): AutotuneOutcome[] {
  const device = validateDevice(options.device ?? 0, "options.device");
  const specs = options.layouts.map((l, i) => {
    try {
      return typeof l === "string" ? parseLayoutSpec(l) : checkLayoutSpec(l, `options.layouts[${i}]`);
    } catch (error) {
      throw new MlaKvError("INVALID_ARGUMENT", (error as Error).message, "options.layouts");
    }
  });
  const loc = options.loc ?? "both";
  const locs = locWidths(loc);
  if (locs === undefined) throw new MlaKvError("INVALID_ARGUMENT", `options.loc: expected "i32", "i64" or "both", got ${String(loc)}`, "options.loc");
  const identity = gpuIdentity(device);
  // One reading of the environment for every layout of the call.
  const env = { ...process.env };
  const outcomes: AutotuneOutcome[] = [];
  for (const { key, layout } of specLayouts(specs, locs)) {
    const result = defaultLookup.getOrTune({
      identity,
      layoutKey: key,
      env,
      // Asked for, so tuned even with MLA_KV_AUTOTUNE=0.
      explicit: true,
      force: options.force === true,
      ...(options.warn === undefined ? {} : { warn: options.warn }),
      tune: () =>
        tuneOnDevice(device, layout, {
          ...(options.method === undefined ? {} : { method: options.method }),
          onProgress: (done, total, label) => options.onProgress?.({ layoutKey: key, done, total, label }),
        }).profile,
    });
    outcomes.push({ layoutKey: key, source: result.source, profile: result.layout, path: result.path, ...(result.persisted === undefined ? {} : { persisted: result.persisted }) });
  }
  // Tables handed out before this call (the built-in rule, say) must not outlive the new profiles.
  clearTables();
  return outcomes;
}
