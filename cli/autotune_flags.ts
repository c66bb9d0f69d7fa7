/**
 * The command line of `bun run autotune`: its flags, their help text, and the row layouts they
 * name (`bf16:512+64`, `bf16:512+64:fp8_ds_mla`), checked into what the tuner takes.
 */
import { exitStatusHelp, parseFlags, UsageError } from "./usage.ts";
import { locWidths, parseLayoutSpec as parseSpec, ROW_DTYPES, type LayoutSpec } from "../autotune/autotune.ts";
import { bucketN, LAST_BUCKET, QUANTIZED_FORMATS } from "../src/vocabulary.ts";

/** What the command tunes unless --layout says: the copies and caches engines write today. */
export const DEFAULT_LAYOUT_SPECS = [
  "bf16:512+64",
  "fp16:512+64",
  "u8:528+128",
  "bf16:512+64:fp8_e4m3",
  "bf16:512+64:fp8_ds_mla",
  "bf16:448+64:fp8_ds_v4@64",
  "bf16:128+0:fp8_indexer@64",
] as const;

/** The --help of the command, run as `program` (`bun run autotune`, `mla-kv autotune`). */
export function autotuneHelp(program = "bun run autotune"): string {
  return `Usage: ${program} [flags]

Times the kernel designs and launch shapes of mla-kv's KV-cache write on this machine's NVIDIA
GPUs, for each row layout and batch size n = 1 .. ${bucketN(LAST_BUCKET)}, prints the fastest per n, and
saves them to the user profile that programs using mla-kv read on first use (instead of tuning
then). Programs can do the same at start-up with autotune() (see the README).

Flags:
  --layout <spec>    Row layout to tune, dtype:nope+rope in elements; repeatable.
                     dtype is one of ${ROW_DTYPES.join(", ")}.
                     dtype:nope+rope:format[.rule][@pageSize] tunes a quantizing write
                     from bf16/fp16 sources, format one of
                     ${QUANTIZED_FORMATS.join(", ")}.
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
  --plot <FILE.svg>  Write time per call vs n (log-log), one line per kernel design and
                     the chosen launch dashed. With several layouts or GPUs the layout
                     (and GPU) is added to the file name.
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
  ${program} --layout bf16:448+64:fp8_ds_v4@64 --loc i32
  ${program} --exhaustive --json > profile.json
`;
}

export interface CliOptions {
  layouts: LayoutSpec[];
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
  const locs = locWidths(loc);
  if (locs === undefined) throw new UsageError(`--loc ${JSON.stringify(loc)} is not i32, i64 or both`);

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

/** A --layout value checked into a spec; throws UsageError. */
export function parseLayoutSpec(spec: string): LayoutSpec {
  try {
    return parseSpec(spec);
  } catch (error) {
    throw new UsageError(`--layout ${(error as Error).message}`);
  }
}

export function locName(locBytes: 4 | 8): string {
  return locBytes === 4 ? "i32" : "i64";
}
