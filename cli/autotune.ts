#!/usr/bin/env bun
/**
 * `bun run autotune`: tunes the launch configs of row layouts on this machine's GPUs, prints what
 * it found, and saves it to the user profile that programs using mla-kv read on first use.
 *
 * Everything that touches a GPU comes in through {@link AutotuneDeps}, so the command (argument
 * parsing, progress, tables, plots, JSON) runs and is tested without one.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Env } from "../autotune/cache_dir.ts";
import { quietRequested } from "../autotune/lookup.ts";
import { identityKey, makeProfile, type GpuIdentity, type LayoutProfile, type Profile } from "../autotune/profile.ts";
import { tuneLayoutWithStats, type TuneStats } from "../autotune/search.ts";
import { BUCKET_COUNT } from "../src/vocabulary.ts";
import { autotuneHelp, parseCli, type CliOptions } from "./autotune_flags.ts";
import { createGpuDeps, type GpuInfo, type GpuSide, type NoGpus } from "./autotune_gpu.ts";
import { chooseGpus, jobLabel, layoutJobs, type LayoutJob } from "./autotune_plan.ts";
import { plotFile, plotLayout } from "./autotune_plot.ts";
import { layoutTable, Progress, seconds, winnersLine, type Writer } from "./autotune_report.ts";
import { userProfileStore, type ProfileStore } from "./autotune_store.ts";
import { EXIT, firstLine, UsageError } from "./usage.ts";

export interface AutotuneDeps extends GpuSide {
  store: ProfileStore;
  stdout: Writer;
  stderr: Writer;
  /** For MLA_KV_QUIET; default process.env. */
  env?: Env;
  /** Milliseconds since the epoch, for tune timing; default Date.now. */
  now?: () => number;
  /** How the user ran the command, for --help: `bun run autotune` (default) or `mla-kv autotune`. */
  program?: string;
}

/** One (GPU, layout) of a run, and the stored profile that makes tuning it unnecessary. */
interface Task {
  gpu: GpuInfo;
  job: LayoutJob;
  stored: LayoutProfile | null;
}

/** What one run shares between its tasks. */
interface Run {
  opts: CliOptions;
  deps: AutotuneDeps;
  gpus: GpuInfo[];
  jobs: LayoutJob[];
  progress: Progress;
  note: (line: string) => void;
  /** Per GPU setup, the layouts it ends with (tuned or stored), for --json. */
  profiles: Map<string, { identity: GpuIdentity; layouts: Record<string, LayoutProfile> }>;
}

const BUCKETS_PER_TUNE = BUCKET_COUNT;

/**
 * Runs the command; returns the exit status (see {@link EXIT}). Never throws for a bad command
 * line, a missing GPU or a failed GPU step; what went wrong is one sentence on stderr.
 */
export function runAutotune(argv: readonly string[], deps: AutotuneDeps): number {
  const err = deps.stderr;
  let opts: CliOptions;
  try {
    opts = parseCli(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`autotune: ${e.message}; see --help.\n`);
    return EXIT.usage;
  }
  if (opts.help) {
    deps.stdout.write(autotuneHelp(deps.program));
    return EXIT.ok;
  }
  const quiet = opts.quiet || quietRequested(deps.env ?? process.env, (line) => err.write(`${line}\n`));
  const note = (line: string) => {
    if (!quiet) err.write(`autotune: ${line}\n`);
  };

  let found: GpuInfo[] | NoGpus;
  try {
    found = deps.gpus();
  } catch (e) {
    found = { error: firstLine(e) };
  }
  if (Array.isArray(found) && found.length === 0) found = { error: "the driver reports no devices", noGpu: true };
  if (!Array.isArray(found)) {
    err.write(found.noGpu === true
      ? `autotune: no NVIDIA GPU found (${found.error}); nothing to tune.\n`
      : `autotune: cannot use the GPUs (${found.error}); nothing tuned.\n`);
    return found.noGpu === true ? EXIT.noGpu : EXIT.failed;
  }
  const gpus = chooseGpus(found, opts.devices, note);
  if (!Array.isArray(gpus)) {
    err.write(`autotune: ${gpus.unknown}; see --help.\n`);
    return EXIT.usage;
  }
  const jobs = layoutJobs(opts);
  for (const j of jobs) {
    if (j.names.length > 1) note(`${j.names.join(" and ")} have the same bytes per row (${j.key}); tuned once for all of them.`);
  }

  // Decide first what needs tuning, so the progress total is known.
  const tasks = gpus.flatMap((gpu) => jobs.map((job) => ({ gpu, job, stored: opts.force ? null : storedLayout(deps.store, gpu, job, note) })));
  const toTune = tasks.filter((t) => t.stored === null).length;
  const run: Run = { opts, deps, gpus, jobs, progress: new Progress(err, toTune * BUCKETS_PER_TUNE, !quiet), note, profiles: new Map() };

  let status: number = EXIT.ok;
  let tunesDone = 0;
  for (const task of tasks) {
    const outcome = runTask(run, task, tunesDone * BUCKETS_PER_TUNE);
    if (outcome === "failed") return EXIT.failed;
    if (outcome.tuned) tunesDone++;
    if (!outcome.ok) status = EXIT.failed;
  }
  run.progress.clear();

  if (opts.json) {
    const all = [...run.profiles.values()].map((p) => makeProfile(p.identity, p.layouts));
    const value: Profile | Profile[] = all.length === 1 ? all[0]! : all;
    deps.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }
  return status;
}

function storedLayout(store: ProfileStore, gpu: GpuInfo, job: LayoutJob, note: (line: string) => void): LayoutProfile | null {
  try {
    return store.existing(gpu.identity, job.key);
  } catch (e) {
    note(`could not read the stored profile for ${job.key} (${firstLine(e)}); tuning it.`);
    return null;
  }
}

/** Tunes (or shows) one task and prints it; "failed" ends the run, !ok fails it at the end. */
function runTask(run: Run, task: Task, progressOffset: number): "failed" | { tuned: boolean; ok: boolean } {
  const { gpu, job } = task;
  const { opts, deps, progress } = run;
  const err = deps.stderr;
  let ok = true;
  let layout: LayoutProfile;
  let tuned: { stats: TuneStats; where: string } | null = null;

  if (task.stored !== null) {
    layout = task.stored;
  } else {
    const result = tuneAndSave(run, task, progressOffset);
    if (result === "failed") return "failed";
    layout = result.profile;
    if (result.saveError !== null) {
      progress.clear();
      err.write(`autotune: could not save the profile for ${job.key}: ${result.saveError}\n`);
      ok = false;
    }
    tuned = { stats: result.stats, where: result.saved ?? "not saved" };
  }

  const id = identityKey(gpu.identity);
  let entry = run.profiles.get(id);
  if (entry === undefined) run.profiles.set(id, (entry = { identity: gpu.identity, layouts: {} }));
  entry.layouts[job.key] = layout;

  let plotted: string | null = null;
  if (opts.plot !== null) {
    const file = plotFile(opts.plot, gpu.index, job, run.gpus.length > 1, run.jobs.length > 1);
    try {
      mkdirSync(dirname(file) || ".", { recursive: true });
      writeFileSync(file, plotLayout(layout, `${gpu.name}: ${jobLabel(job)}`));
      plotted = file;
    } catch (e) {
      progress.clear();
      err.write(`autotune: could not write the plot ${file}: ${firstLine(e)}\n`);
      ok = false;
    }
  }

  progress.clear();
  if (opts.json) {
    if (plotted !== null) run.note(`plot: ${plotted}`);
    return { tuned: tuned !== null, ok };
  }
  const lines = [
    `GPU ${gpu.index} ${gpu.name}: ${jobLabel(job)} (${job.key}, ${job.rowBytes} B per row)`,
    layoutTable(layout, job.rowBytes),
    winnersLine(layout),
  ];
  if (tuned !== null) {
    lines.push(`tuned in ${seconds(layout.tuneMs)}: ${layout.method}, ${tuned.stats.measurements} timings (there are ${tuned.stats.configsTotal} config × n pairs)`);
    lines.push(`profile: ${tuned.where}`);
  } else {
    lines.push(`stored profile, tuned ${layout.tunedAt} in ${seconds(layout.tuneMs)} (${layout.method}); kept, --force tunes again`);
  }
  if (plotted !== null) lines.push(`plot: ${plotted}`);
  deps.stdout.write(`${lines.join("\n")}\n\n`);
  return { tuned: tuned !== null, ok };
}

/** The tune of one task and its save, under the store's tuning lock; "failed" when the tune threw. */
function tuneAndSave(run: Run, task: Task, progressOffset: number) {
  const { gpu, job } = task;
  const { deps, progress } = run;
  const tag = `${run.gpus.length > 1 ? `GPU ${gpu.index} ` : ""}${jobLabel(job)}`;
  const tune = () => {
    const r = tuneLayoutWithStats({
      ...deps.tunerFor(gpu.index, job.layout),
      method: run.opts.exhaustive ? "exhaustive" : "search",
      now: deps.now,
      // A tune whose scratch caps its buckets has fewer than BUCKETS_PER_TUNE; it still fills its share.
      onProgress: (done, total, n) => progress.update(progressOffset + (done / total) * BUCKETS_PER_TUNE, `${tag}, ${n}`),
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
  try {
    return deps.store.whileTuning ? deps.store.whileTuning(gpu.identity, job.key, tune) : tune();
  } catch (e) {
    progress.clear();
    deps.stderr.write(`autotune: tuning ${jobLabel(job)} on GPU ${gpu.index} failed: ${firstLine(e)}\n`);
    return "failed" as const;
  }
}

/**
 * The command on this machine's GPUs; returns the exit status. `program` is how the user ran it,
 * for --help.
 */
export function main(argv: readonly string[], program = "bun run autotune"): number {
  const env = process.env;
  const stdout: Writer = { write: (s) => process.stdout.write(s), isTTY: process.stdout.isTTY === true };
  const stderr: Writer = { write: (s) => process.stderr.write(s), isTTY: process.stderr.isTTY === true };
  let parsed: CliOptions | null = null;
  try {
    parsed = parseCli(argv);
  } catch {
    // runAutotune reports it.
  }
  // Touches no GPU until runAutotune asks for the GPUs, which it never does for help or bad flags.
  const gpu = createGpuDeps();
  // Silent here: runAutotune reads it again and says what is wrong with it.
  const quiet = parsed?.quiet === true || quietRequested(env, () => {});
  const store = userProfileStore(env, (line) => {
    if (!quiet) stderr.write(`${line}\n`);
  });
  return runAutotune(argv, { ...gpu, store, stdout, stderr, env, program });
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
