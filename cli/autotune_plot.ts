/**
 * The `--plot` of `bun run autotune`: time per call against n, log-log, per tuned layout.
 */
import { basename, dirname, extname, join } from "node:path";
import type { LayoutProfile } from "../autotune/profile.ts";
import { PATHS } from "../src/vocabulary.ts";
import { locName } from "./autotune_flags.ts";
import type { LayoutJob } from "./autotune_plan.ts";
import { renderLinePlot, type PlotSeries } from "./svg_plot.ts";

/** Time per call vs n, log-log: each design's best launch per n, the chosen one dashed. */
export function plotLayout(layout: LayoutProfile, title: string): string {
  const paths = PATHS.filter((path) => layout.buckets.some((b) => b.ranked.some((c) => c.path === path)));
  const series: PlotSeries[] = paths.map((path) => ({
    name: `${path}, best launch per n`,
    points: layout.buckets.flatMap((b) => b.ranked.filter((c) => c.path === path).map((c) => [b.n, c.us] as const)),
  }));
  series.push({ name: "chosen (what dispatch uses)", points: layout.buckets.map((b) => [b.n, b.ranked[0]!.us] as const), dashed: true, color: "#222222" });
  return renderLinePlot({ title, xLabel: "rows per call (n)", yLabel: "µs per call", logX: true, logY: true, series });
}

/** The plot file of one layout: the given name, with the layout (and GPU) added when there are several. */
export function plotFile(base: string, gpuIndex: number, job: LayoutJob, manyGpus: boolean, manyLayouts: boolean): string {
  if (!manyGpus && !manyLayouts) return base;
  const ext = extname(base);
  const stem = basename(base, ext);
  const parts: string[] = [];
  if (manyLayouts) parts.push(`${job.names[0]!.replaceAll(":", "-")}-${locName(job.layout.locBytes)}`);
  if (manyGpus) parts.push(`gpu${gpuIndex}`);
  return join(dirname(base), `${stem}-${parts.join("-")}${ext}`);
}
