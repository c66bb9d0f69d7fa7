/**
 * `bun run autotune`: tunes the launch configs of row layouts on this machine's GPUs, prints what
 * it found, and saves it to the user profile that programs using mla-kv read on first use.
 *
 * Everything that touches a GPU comes in through {@link AutotuneDeps}, so the command (argument
 * parsing, progress, tables, plots, JSON) runs and is tested without one. When run directly, the
 * GPU side is loaded from `autotune/gpu_deps.ts` (see {@link GpuDepsModule}).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import { parseArgs } from "node:util";
import { cacheDir, profilePath, type Env } from "./cache_dir.ts";
import { LockTimeoutError, withLock } from "./lock.ts";
import { DEFAULT_TUNE_LOCK, ProfileLookup, quietRequested, tuneLockTarget } from "./lookup.ts";
import { layoutAllowsTma, layoutRowBytes } from "../src/layout.ts";
// The key dispatch looks profiles up by, so what this command stores is what writes will find.
import { layoutKey, type LayoutKeyInput } from "../src/dispatch.ts";
import { DS_MLA, flatFp8ShapeProblem, type QuantizedFormat, type SourceDtype } from "../src/write_format.ts";
import { dtypeBytes } from "../src/dtypes.ts";
import {
  identityKey,
  makeProfile,
  type Choice,
  type GpuIdentity,
  type LayoutProfile,
  type Profile,
} from "./profile.ts";
import { DEFAULT_MAX_BUCKET, tuneLayoutWithStats, type MeasureFn, type TuneStats } from "./search.ts";
import { ensureDir, writeProfileFile } from "./store.ts";
import { renderLinePlot, type PlotSeries } from "../src/svg_plot.ts";

/** Where text goes; `isTTY` on stderr turns the progress line into one redrawn in place. */
export interface Writer {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface GpuInfo {
  /** The CUDA device index. */
  index: number;
  name: string;
  identity: GpuIdentity;
  /** Whether the TMA path can run on this GPU (sm_90 and later). */
  tmaAllowed: boolean;
}

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

export interface ProfileStore {
  /** Saves one tuned layout; returns where it went. Throws, saying why, when it cannot. */
  save(identity: GpuIdentity, layoutKey: string, layout: LayoutProfile): string;
  /** The stored profile programs would use for this layout, or null if there is none. */
  existing(identity: GpuIdentity, layoutKey: string): LayoutProfile | null;
  /**
   * Runs one layout's tune and save while other processes are kept from tuning that layout of
   * that GPU at the same time (two tunes on one GPU spoil each other's timings). Optional.
   */
  whileTuning?<T>(identity: GpuIdentity, layoutKey: string, fn: () => T): T;
}

export interface AutotuneDeps {
  /** The GPUs there are, or why none can be used. */
  gpus(): GpuInfo[] | { error: string };
  /** A timing function for one layout on one device: µs per call, already a best-of-several. */
  measureFor(device: number, layout: TuneLayoutSpec): MeasureFn;
  store: ProfileStore;
  stdout: Writer;
  stderr: Writer;
  /** For MLA_KV_QUIET; default process.env. */
  env?: Env;
  /** Milliseconds since the epoch, for tune timing; default Date.now. */
  now?: () => number;
}

/** What `autotune/gpu_deps.ts` must export for the command to run on real GPUs. */
export interface GpuDepsModule {
  createGpuDeps(): Pick<AutotuneDeps, "gpus" | "measureFor"> | Promise<Pick<AutotuneDeps, "gpus" | "measureFor">>;
}

export const DEFAULT_LAYOUT_SPECS = ["bf16:512+64", "fp16:512+64", "u8:528+128", "bf16:512+64:fp8_e4m3", "bf16:512+64:fp8_ds_mla"] as const;

const QUANTIZED_FORMATS: readonly QuantizedFormat[] = ["fp8_e4m3", "fp8_e5m2", "fp8_ds_mla"];

/** The tune allocates 65536 rows of a layout several times over; larger rows are not MLA rows. */
export const MAX_ROW_BYTES = 65536;

export const HELP = `Usage: bun run autotune [flags]

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

Exit status: 0 done; 1 no GPU, or a tune, save or plot failed; 2 bad flags.

Examples:
  bun run autotune
  bun run autotune --layout bf16:512+64 --loc i64 --device 0
  bun run autotune --layout u8:528+128 --force --plot u8.svg
  bun run autotune --layout bf16:512+64:fp8_ds_mla --loc i64
  bun run autotune --exhaustive --json > profile.json
`;

/** A bad command line; its message is one sentence for the user. */
export class UsageError extends Error {
  override name = "UsageError";
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
  let values: { [K in keyof typeof OPTIONS]?: Array<string | boolean> };
  try {
    values = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(parseArgsSentence(e));
  }
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

function parseArgsSentence(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const message = String(err.message ?? e);
  const flag = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${flag ?? message}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? message} (this command takes only flags)`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(message)) return `${flag} takes no value`;
      return `${flag ?? "a flag"} needs a value`;
    default:
      return message.split("\n")[0]!;
  }
}

/** One layout key to tune, and the specs (and loc) that share it. */
interface LayoutJob {
  key: string;
  spec: TuneLayoutSpec;
  names: string[];
  rowBytes: number;
}

function specName(s: Omit<TuneLayoutSpec, "locBytes">): string {
  return `${s.dtype}:${s.nopeElems}+${s.ropeElems}${s.format === undefined ? "" : `:${s.format}`}`;
}

function locName(locBytes: 4 | 8): string {
  return locBytes === 4 ? "i32" : "i64";
}

function layoutJobs(opts: CliOptions): LayoutJob[] {
  const jobs: LayoutJob[] = [];
  for (const locBytes of opts.locs) {
    for (const s of opts.layouts) {
      const input = layoutInputOf({ ...s, locBytes });
      const key = layoutKey(input);
      const name = specName(s);
      const job = jobs.find((j) => j.key === key);
      if (job === undefined) {
        jobs.push({ key, spec: { ...s, locBytes }, names: [name], rowBytes: layoutRowBytes(input) });
      } else if (!job.names.includes(name)) job.names.push(name);
    }
  }
  return jobs;
}

function label(job: LayoutJob): string {
  return `${job.names.join(" = ")}, ${locName(job.spec.locBytes)} loc`;
}

/**
 * Runs the command; returns the exit status. Never throws for a bad command line (status 2) or a
 * failed GPU step (status 1); what went wrong is one sentence on stderr.
 */
export function runAutotune(argv: readonly string[], deps: AutotuneDeps): number {
  const out = deps.stdout;
  const err = deps.stderr;
  let opts: CliOptions;
  try {
    opts = parseCli(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`autotune: ${e.message}; see --help.\n`);
    return 2;
  }
  if (opts.help) {
    out.write(HELP);
    return 0;
  }
  const quiet = opts.quiet || quietRequested(deps.env ?? process.env);
  const note = (line: string) => {
    if (!quiet) err.write(`autotune: ${line}\n`);
  };

  let found: GpuInfo[] | { error: string };
  try {
    found = deps.gpus();
  } catch (e) {
    found = { error: firstLine(e) };
  }
  if (!Array.isArray(found) || found.length === 0) {
    const why = Array.isArray(found) ? "the driver reports no devices" : found.error;
    err.write(`autotune: no NVIDIA GPU found (${why}); nothing to tune.\n`);
    return 1;
  }
  const all = found;

  let chosen: GpuInfo[];
  if (opts.devices === null) {
    chosen = all;
  } else {
    chosen = [];
    for (const d of opts.devices) {
      const g = all.find((x) => x.index === d);
      if (g === undefined) {
        err.write(`autotune: --device ${d} is not a GPU here (there are ${all.map((x) => x.index).join(", ")}); see --help.\n`);
        return 2;
      }
      chosen.push(g);
    }
  }
  // Identical GPUs share one profile file, so one of them is tuned for all.
  const gpus: GpuInfo[] = [];
  for (const g of chosen) {
    const twin = gpus.find((x) => identityKey(x.identity) === identityKey(g.identity));
    if (twin === undefined) gpus.push(g);
    else note(`GPU ${g.index} is the same setup as GPU ${twin.index} (${twin.name}); one profile serves both.`);
  }

  const jobs = layoutJobs(opts);
  for (const j of jobs) {
    if (j.names.length > 1) note(`${j.names.join(" and ")} have the same bytes per row (${j.key}); tuned once for all of them.`);
  }

  // Decide first what needs tuning, so the progress total is known.
  interface Task {
    gpu: GpuInfo;
    job: LayoutJob;
    stored: LayoutProfile | null;
  }
  const tasks: Task[] = [];
  for (const gpu of gpus) {
    for (const job of jobs) {
      let stored: LayoutProfile | null = null;
      if (!opts.force) {
        try {
          stored = deps.store.existing(gpu.identity, job.key);
        } catch (e) {
          note(`could not read the stored profile for ${job.key} (${firstLine(e)}); tuning it.`);
        }
      }
      tasks.push({ gpu, job, stored });
    }
  }

  const bucketsPerTune = DEFAULT_MAX_BUCKET + 1;
  const toTune = tasks.filter((t) => t.stored === null).length;
  const progress = new Progress(err, toTune * bucketsPerTune, !quiet);
  const method = opts.exhaustive ? "exhaustive" : "search";
  const profiles = new Map<string, { identity: GpuIdentity; layouts: Record<string, LayoutProfile> }>();
  const several = gpus.length > 1;
  let status = 0;
  let tunesDone = 0;

  for (const task of tasks) {
    const { gpu, job } = task;
    const title = `GPU ${gpu.index} ${gpu.name}: ${label(job)} (${job.key}, ${job.rowBytes} B per row)`;
    let layout: LayoutProfile;
    let stats: TuneStats | null = null;
    let where: string | null = null;

    if (task.stored !== null) {
      layout = task.stored;
    } else {
      const tag = `${several ? `GPU ${gpu.index} ` : ""}${label(job)}`;
      const offset = tunesDone * bucketsPerTune;
      const tuneAndSave = () => {
        const measure = deps.measureFor(gpu.index, job.spec);
        const r = tuneLayoutWithStats({
          measure,
          tmaAllowed: gpu.tmaAllowed && layoutAllowsTma(layoutInputOf(job.spec)),
          maxBucket: DEFAULT_MAX_BUCKET,
          method,
          now: deps.now,
          onProgress: (done, _total, n) => progress.update(offset + done, `${tag}, ${n}`),
        });
        let saved: string | null = null;
        let saveError: string | null = null;
        try {
          saved = deps.store.save(gpu.identity, job.key, r.profile);
        } catch (e) {
          saveError = firstLine(e);
        }
        return { ...r, saved, saveError };
      };
      let result: ReturnType<typeof tuneAndSave>;
      try {
        result = deps.store.whileTuning ? deps.store.whileTuning(gpu.identity, job.key, tuneAndSave) : tuneAndSave();
      } catch (e) {
        progress.clear();
        err.write(`autotune: tuning ${label(job)} on GPU ${gpu.index} failed: ${firstLine(e)}\n`);
        return 1;
      }
      tunesDone++;
      layout = result.profile;
      stats = result.stats;
      if (result.saveError !== null) {
        progress.clear();
        err.write(`autotune: could not save the profile for ${job.key}: ${result.saveError}\n`);
        status = 1;
        where = "not saved";
      } else {
        where = result.saved;
      }
    }

    const id = identityKey(gpu.identity);
    let entry = profiles.get(id);
    if (entry === undefined) profiles.set(id, (entry = { identity: gpu.identity, layouts: {} }));
    entry.layouts[job.key] = layout;

    let plotted: string | null = null;
    if (opts.plot !== null) {
      const file = plotFile(opts.plot, gpu, job, gpus.length > 1, jobs.length > 1);
      try {
        mkdirSync(dirname(file) || ".", { recursive: true });
        writeFileSync(file, plotLayout(layout, `${gpu.name}: ${label(job)}`));
        plotted = file;
      } catch (e) {
        progress.clear();
        err.write(`autotune: could not write the plot ${file}: ${firstLine(e)}\n`);
        status = 1;
      }
    }

    if (opts.json) {
      if (plotted !== null) note(`plot: ${plotted}`);
      continue;
    }
    progress.clear();
    const lines = [title, layoutTable(layout, job.rowBytes), crossoverLine(layout)];
    if (stats !== null) {
      lines.push(`tuned in ${seconds(layout.tuneMs)}: ${layout.method}, ${stats.measurements} timings (there are ${stats.configsTotal} config × n pairs)`);
      lines.push(`profile: ${where}`);
    } else {
      lines.push(`stored profile, tuned ${layout.tunedAt} in ${seconds(layout.tuneMs)} (${layout.method}); kept, --force tunes again`);
    }
    if (plotted !== null) lines.push(`plot: ${plotted}`);
    out.write(`${lines.join("\n")}\n\n`);
  }
  progress.done();

  if (opts.json) {
    const all = [...profiles.values()].map((p) => makeProfile(p.identity, p.layouts));
    const value: Profile | Profile[] = all.length === 1 ? all[0]! : all;
    out.write(`${JSON.stringify(value, null, 2)}\n`);
  }
  return status;
}

/** The per-n table of one layout's profile. */
export function layoutTable(layout: LayoutProfile, rowBytes: number): string {
  const head = ["n", "path", "warps", "rows/warp", "µs/call", "GB/s", "other path µs", "other/chosen"];
  const rows = layout.buckets.map((b) => {
    const other = b.best.path === "tma" ? b.bestVector : b.bestTma;
    const gbs = (2 * b.n * rowBytes) / (b.best.us * 1e3);
    return [
      String(b.n),
      b.best.path,
      String(b.best.warps),
      String(b.best.rowsPerWarp),
      b.best.us.toFixed(2),
      gbs < 10 ? gbs.toFixed(2) : gbs < 100 ? gbs.toFixed(1) : gbs.toFixed(0),
      other === null ? "—" : other.us.toFixed(2),
      other === null ? "—" : `${(other.us / b.best.us).toFixed(2)}×`,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // Text columns read best left-aligned, numbers right-aligned.
  const left = new Set([1]);
  const line = (cells: string[]) =>
    cells.map((c, i) => (left.has(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

export function crossoverLine(layout: LayoutProfile): string {
  if (layout.buckets.every((b) => b.bestTma === null)) return "crossover: TMA not available";
  if (layout.crossoverN !== null) return `crossover: TMA from n = ${layout.crossoverN}`;
  const wins = layout.buckets.filter((b) => b.best.path === "tma").map((b) => b.n);
  if (wins.length === 0) return "crossover: TMA never wins";
  return `crossover: none; TMA wins only at n = ${wins.join(", ")}`;
}

/** Time per call vs n, log-log: each path's best config per n, the chosen one dashed. */
export function plotLayout(layout: LayoutProfile, title: string): string {
  const line = (pick: (b: LayoutProfile["buckets"][number]) => Choice | null) =>
    layout.buckets.flatMap((b) => {
      const c = pick(b);
      return c === null ? [] : [[b.n, c.us] as const];
    });
  const series: PlotSeries[] = [{ name: "vector, best config per n", points: line((b) => b.bestVector) }];
  const tma = line((b) => b.bestTma);
  if (tma.length > 0) series.push({ name: "TMA, best config per n", points: tma });
  series.push({ name: "chosen (what dispatch uses)", points: line((b) => b.best), dashed: true, color: "#222222" });
  return renderLinePlot({
    title,
    xLabel: "rows per call (n)",
    yLabel: "µs per call",
    logX: true,
    logY: true,
    series,
    markers: layout.crossoverN === null ? [] : [{ x: layout.crossoverN, label: `TMA from n = ${layout.crossoverN}` }],
  });
}

/** The plot file of one layout: the given name, with the layout (and GPU) added when there are several. */
function plotFile(base: string, gpu: GpuInfo, job: LayoutJob, manyGpus: boolean, manyLayouts: boolean): string {
  if (!manyGpus && !manyLayouts) return base;
  const ext = extname(base);
  const stem = basename(base, ext);
  const parts: string[] = [];
  if (manyLayouts) parts.push(`${job.names[0]!.replaceAll(":", "-")}-${locName(job.spec.locBytes)}`);
  if (manyGpus) parts.push(`gpu${gpu.index}`);
  return join(dirname(base), `${stem}-${parts.join("-")}${ext}`);
}

function seconds(ms: number): string {
  if (ms < 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0]!.trim() || "unknown error";
}

/**
 * Progress on stderr: one line redrawn in place on a terminal; otherwise (a log file, CI) a line
 * at each quarter, so logs stay short.
 */
class Progress {
  #quarter = 0;
  #shown = false;

  constructor(
    readonly err: Writer,
    readonly total: number,
    readonly enabled: boolean,
  ) {}

  update(done: number, what: string): void {
    if (!this.enabled || this.total <= 0) return;
    const frac = Math.min(1, Math.max(0, done / this.total));
    const pct = Math.floor(frac * 100);
    if (this.err.isTTY) {
      const width = 20;
      const filled = Math.round(frac * width);
      // Kept short of 80 columns: a wrapped line cannot be redrawn with \r.
      const text = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(pct).padStart(3)}%  ${what}`;
      this.err.write(`\r\x1b[K${text.length > 78 ? `${text.slice(0, 77)}…` : text}`);
      this.#shown = true;
      return;
    }
    const q = Math.floor(frac * 4);
    while (this.#quarter < q) {
      this.#quarter++;
      this.err.write(`autotune: ${this.#quarter * 25}% (${what})\n`);
    }
  }

  /** Takes the redrawn line off the terminal before other output. */
  clear(): void {
    if (!this.#shown) return;
    this.err.write("\r\x1b[K");
    this.#shown = false;
  }

  done(): void {
    this.clear();
  }
}

// The command is run by hand and may wait long for a program's tune to finish, but judges a lock
// stale exactly as first use does, so the two never disagree about who holds it.
const TUNE_LOCK = { timeoutMs: 10 * 60_000, staleMs: DEFAULT_TUNE_LOCK.staleMs };

/**
 * The store programs read: the user profile file in the cache dir (MLA_KV_CACHE_DIR), with the
 * bundled profiles behind it for `existing`. Tunes take the same per-layout lock as tuning on
 * first use, so this command and a program starting up never time one GPU at once.
 */
export function userProfileStore(
  env: Env = process.env,
  warn: (line: string) => void = (l) => console.warn(l),
  lookup: ProfileLookup = new ProfileLookup(),
): ProfileStore {
  const fileFor = (identity: GpuIdentity) => profilePath(cacheDir(env), identity);
  return {
    existing(identity, key) {
      return lookup.lookup({ identity, layoutKey: key, env, warn }).layout;
    },
    save(identity, key, layout) {
      const path = fileFor(identity);
      const r = writeProfileFile(path, makeProfile(identity, { [key]: layout }));
      if (!r.ok) throw new Error(`${path}: ${r.reason}: ${r.detail}`);
      return path;
    },
    whileTuning<T>(identity: GpuIdentity, key: string, fn: () => T): T {
      const path = fileFor(identity);
      // Without a dir there is no lock file; the save will say why.
      if (ensureDir(dirname(path)) !== null) return fn();
      const target = tuneLockTarget(path, key);
      let entered = false;
      try {
        return withLock(target, { ...TUNE_LOCK, pollMs: 50 }, () => {
          entered = true;
          return fn();
        });
      } catch (e) {
        if (entered) throw e;
        // The lock only keeps tunes apart; failing to get it is no reason not to tune.
        warn(
          e instanceof LockTimeoutError
            ? `mla-kv: another process kept tuning ${key} for more than ${TUNE_LOCK.timeoutMs / 60_000} min; tuning anyway`
            : `mla-kv: cannot take the tuning lock for ${key} (${firstLine(e)}); tuning anyway`,
        );
        return fn();
      }
    },
  };
}

function offline(reason: string): Pick<AutotuneDeps, "gpus" | "measureFor"> {
  return {
    gpus: () => ({ error: reason }),
    measureFor: () => {
      throw new Error(reason);
    },
  };
}

/** The GPU side from autotune/gpu_deps.ts; if it is missing or fails, a GPU list that says why. */
export async function loadGpuDeps(
  // The compiled package (dist/, for Deno) holds gpu_deps.js beside this module, the sources gpu_deps.ts.
  moduleUrl: URL = new URL(import.meta.url.endsWith(".js") ? "./gpu_deps.js" : "./gpu_deps.ts", import.meta.url),
): Promise<Pick<AutotuneDeps, "gpus" | "measureFor">> {
  let mod: Partial<GpuDepsModule>;
  try {
    mod = (await import(moduleUrl.href)) as Partial<GpuDepsModule>;
  } catch (e) {
    const missing = (e as { code?: string }).code === "ERR_MODULE_NOT_FOUND" || /cannot find module/i.test(firstLine(e));
    return offline(missing ? "the GPU timing module autotune/gpu_deps.ts is not installed" : `loading the GPU timing module failed: ${firstLine(e)}`);
  }
  if (typeof mod.createGpuDeps !== "function") return offline("autotune/gpu_deps.ts does not export createGpuDeps()");
  try {
    return await mod.createGpuDeps();
  } catch (e) {
    return offline(firstLine(e));
  }
}

/** The command on this machine's GPUs; returns the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  const env = process.env;
  const stdout: Writer = { write: (s) => process.stdout.write(s), isTTY: process.stdout.isTTY === true };
  const stderr: Writer = { write: (s) => process.stderr.write(s), isTTY: process.stderr.isTTY === true };
  let parsed: CliOptions | null = null;
  try {
    parsed = parseCli(argv);
  } catch {
    // runAutotune reports it.
  }
  // Help and bad flags need no GPU, and must not wait for one.
  const gpu = parsed === null || parsed.help ? offline("not needed") : await loadGpuDeps();
  const quiet = parsed?.quiet === true || quietRequested(env);
  const store = userProfileStore(env, (line) => {
    if (!quiet) stderr.write(`${line}\n`);
  });
  return runAutotune(argv, { ...gpu, store, stdout, stderr, env });
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
