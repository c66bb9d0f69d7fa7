/**
 * The command line of `bun run autotune`: its flags, their help text, and the row layouts they
 * name (`bf16:512+64`, `bf16:512+64:fp8_ds_mla`), checked into what the tuner takes.
 */
import { exitStatusHelp, parseFlags, UsageError } from "./usage.ts";
// The key dispatch looks profiles up by, so what this command stores is what writes will find.
import type { LayoutKeyInput } from "../src/dispatch.ts";
import { dtypeBytes } from "../src/dtypes.ts";
import { DS_MLA, flatFp8ShapeProblem, type QuantizedFormat, type SourceDtype } from "../src/write_format.ts";
import { DEFAULT_MAX_BUCKET } from "../autotune/search.ts";

/** The element types a cache row may have. */
export const ROW_DTYPES = ["bf16", "fp16", "u8", "fp8_e4m3", "fp8_e5m2"] as const;
export type RowDType = (typeof ROW_DTYPES)[number];

/** A row layout as the command names it: `bf16:512+64` (or `bf16:512+64:fp8_ds_mla`) with a loc dtype. */
export interface TuneLayoutSpec {
  /** The sources' dtype (and the cache's, for a copy). */
  dtype: RowDType;
  nopeElems: number;
  ropeElems: number;
  /** 4 for int32 loc, 8 for int64. */
  locBytes: 4 | 8;
  /** A quantizing write's cache format; absent for a copy. */
  format?: QuantizedFormat;
}

/** What dispatch knows a spec by: its layout key input. */
export function layoutInputOf(spec: TuneLayoutSpec): LayoutKeyInput {
  const w = dtypeBytes(spec.dtype);
  return {
    nopeBytes: spec.nopeElems * w,
    ropeBytes: spec.ropeElems * w,
    locBytes: spec.locBytes,
    ...(spec.format === undefined ? {} : { format: spec.format, sourceDtype: spec.dtype as SourceDtype }),
  };
}

export const DEFAULT_LAYOUT_SPECS = ["bf16:512+64", "fp16:512+64", "u8:528+128", "bf16:512+64:fp8_e4m3", "bf16:512+64:fp8_ds_mla"] as const;

const QUANTIZED_FORMATS: readonly QuantizedFormat[] = ["fp8_e4m3", "fp8_e5m2", "fp8_ds_mla"];

/** The tune allocates 65536 rows of a layout several times over; larger rows are not MLA rows. */
export const MAX_ROW_BYTES = 65536;

/** The --help of the command, run as `program` (`bun run autotune`, `mla-kv autotune`). */
export function autotuneHelp(program = "bun run autotune"): string {
  return `Usage: ${program} [flags]

Times the launch configs of mla-kv's KV-cache write on this machine's NVIDIA GPUs, for each
row layout and batch size n = 1 .. ${2 ** DEFAULT_MAX_BUCKET}, prints the fastest per n, and saves them to the
user profile that programs using mla-kv read on first use (instead of tuning then).

Flags:
  --layout <spec>    Row layout to tune, dtype:nope+rope in elements; repeatable.
                     dtype is one of ${ROW_DTYPES.join(", ")}.
                     dtype:nope+rope:format tunes a quantizing write from bf16/fp16
                     sources, format one of ${QUANTIZED_FORMATS.join(", ")}.
                     Default: ${DEFAULT_LAYOUT_SPECS.join(", ")}.
                     Layouts with the same bytes per row (bf16 and fp16 512+64) are
                     one tune: the write copies bytes.
  --loc <dtype>      loc index dtype: i32, i64 or both. Default: both.
  --device <index>   CUDA device to tune; repeatable. Default: every GPU, once per
                     distinct setup (identical GPUs share one profile).
  --exhaustive       Time every config at every n instead of searching (2-3 times the
                     timings; for checking the search).
  --force            Tune again even where a profile already exists. Without it, an
                     existing profile is shown and kept.
  --json             Print the resulting profile as JSON on stdout instead of tables
                     (one object per GPU setup; an array when there are several).
  --plot <FILE.svg>  Write time per call vs n (log-log), one line per path and the
                     chosen config dashed, with the TMA crossover marked. With several
                     layouts or GPUs the layout (and GPU) is added to the file name.
  -q, --quiet        No progress and no notes on stderr; results still go to stdout.
  -h, --help         Show this help.

Environment:
  MLA_KV_CACHE_DIR   Where profiles are saved. Default: $XDG_CACHE_HOME/mla-kv, else
                     ~/.cache/mla-kv.
  MLA_KV_AUTOTUNE    0 stops programs from tuning on first use (they use saved or bundled
                     profiles, else a built-in rule). This command tunes regardless.
  MLA_KV_QUIET       1 acts like --quiet.

${exitStatusHelp("the library did not load, or a tune, save or plot failed")}

Examples:
  ${program}
  ${program} --layout bf16:512+64 --loc i64 --device 0
  ${program} --layout u8:528+128 --force --plot u8.svg
  ${program} --layout bf16:512+64:fp8_ds_mla --loc i64
  ${program} --exhaustive --json > profile.json
`;
}

export interface CliOptions {
  layouts: Array<Omit<TuneLayoutSpec, "locBytes">>;
  locs: Array<4 | 8>;
  /** null: every GPU. */
  devices: number[] | null;
  exhaustive: boolean;
  json: boolean;
  plot: string | null;
  force: boolean;
  quiet: boolean;
  help: boolean;
}

const OPTIONS = {
  layout: { type: "string", multiple: true },
  loc: { type: "string", multiple: true },
  device: { type: "string", multiple: true },
  exhaustive: { type: "boolean", multiple: true },
  json: { type: "boolean", multiple: true },
  plot: { type: "string", multiple: true },
  force: { type: "boolean", multiple: true },
  quiet: { type: "boolean", short: "q", multiple: true },
  help: { type: "boolean", short: "h", multiple: true },
} as const;

/** Parses the flags; throws UsageError with a one-sentence message. */
export function parseCli(argv: readonly string[]): CliOptions {
  const values: { [K in keyof typeof OPTIONS]?: Array<string | boolean> } = parseFlags(argv, OPTIONS);
  const once = <T>(name: keyof typeof OPTIONS, list: T[] | undefined): T | undefined => {
    if (list !== undefined && list.length > 1) throw new UsageError(`--${name} was given ${list.length} times (give it once)`);
    return list?.[0];
  };
  const help = values.help !== undefined;
  const exhaustive = once("exhaustive", values.exhaustive) === true;
  const json = once("json", values.json) === true;
  const force = once("force", values.force) === true;
  const quiet = once("quiet", values.quiet) === true;

  const specs = (values.layout as string[] | undefined) ?? [...DEFAULT_LAYOUT_SPECS];
  const layouts = specs.map(parseLayoutSpec);

  const loc = once("loc", values.loc as string[] | undefined) ?? "both";
  let locs: Array<4 | 8>;
  if (loc === "i32") locs = [4];
  else if (loc === "i64") locs = [8];
  else if (loc === "both") locs = [4, 8];
  else throw new UsageError(`--loc ${JSON.stringify(loc)} is not i32, i64 or both`);

  let devices: number[] | null = null;
  if (values.device !== undefined) {
    devices = [];
    for (const d of values.device as string[]) {
      if (!/^[0-9]{1,4}$/.test(d)) throw new UsageError(`--device ${JSON.stringify(d)} is not a device index like 0`);
      if (!devices.includes(Number(d))) devices.push(Number(d));
    }
  }

  const plot = once("plot", values.plot as string[] | undefined) ?? null;
  if (plot !== null && !/\.svg$/i.test(plot)) {
    throw new UsageError(`--plot ${JSON.stringify(plot)} must name a file ending in .svg`);
  }
  return { layouts, locs, devices, exhaustive, json, plot, force, quiet, help };
}

/** `bf16:512+64` (or `bf16:512+64:fp8_ds_mla`) → dtype, element counts and format; throws UsageError. */
export function parseLayoutSpec(spec: string): Omit<TuneLayoutSpec, "locBytes"> {
  const m = /^([a-z0-9_]+):([0-9]{1,9})\+([0-9]{1,9})(?::([a-z0-9_]+))?$/.exec(spec);
  if (m === null) {
    throw new UsageError(`--layout ${JSON.stringify(spec)} is not dtype:nope+rope, e.g. bf16:512+64 (or bf16:512+64:fp8_ds_mla)`);
  }
  const dtype = m[1]!;
  if (!(ROW_DTYPES as readonly string[]).includes(dtype)) {
    throw new UsageError(`--layout ${JSON.stringify(spec)}: dtype ${dtype} is not one of ${ROW_DTYPES.join(", ")}`);
  }
  const nopeElems = Number(m[2]);
  const ropeElems = Number(m[3]);
  if (nopeElems === 0) throw new UsageError(`--layout ${JSON.stringify(spec)}: the nope part needs at least one element`);
  const format = m[4];
  if (format !== undefined) {
    if (!(QUANTIZED_FORMATS as readonly string[]).includes(format)) {
      throw new UsageError(`--layout ${JSON.stringify(spec)}: format ${format} is not one of ${QUANTIZED_FORMATS.join(", ")}`);
    }
    if (dtype !== "bf16" && dtype !== "fp16") {
      throw new UsageError(`--layout ${JSON.stringify(spec)}: a ${format} write quantizes bf16 or fp16 sources, not ${dtype}`);
    }
    const problem = format === "fp8_ds_mla"
      ? nopeElems !== DS_MLA.nopeElems || ropeElems !== DS_MLA.ropeElems ? `fp8_ds_mla rows are ${DS_MLA.nopeElems}+${DS_MLA.ropeElems}` : null
      : flatFp8ShapeProblem(nopeElems, ropeElems);
    if (problem !== null) throw new UsageError(`--layout ${JSON.stringify(spec)}: ${problem}`);
    return { dtype: dtype as RowDType, nopeElems, ropeElems, format: format as QuantizedFormat };
  }
  const bytes = (nopeElems + ropeElems) * dtypeBytes(dtype as RowDType);
  if (bytes > MAX_ROW_BYTES) {
    throw new UsageError(`--layout ${JSON.stringify(spec)}: a row of ${bytes} bytes is more than the ${MAX_ROW_BYTES} this command tunes`);
  }
  return { dtype: dtype as RowDType, nopeElems, ropeElems };
}

/** The spec as the command line names it. */
export function specName(s: Omit<TuneLayoutSpec, "locBytes">): string {
  return `${s.dtype}:${s.nopeElems}+${s.ropeElems}${s.format === undefined ? "" : `:${s.format}`}`;
}

export function locName(locBytes: 4 | 8): string {
  return locBytes === 4 ? "i32" : "i64";
}
