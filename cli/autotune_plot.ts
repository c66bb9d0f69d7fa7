/**
 * The `--plot` of `bun run autotune`: time per call against n, log-log, per tuned layout.
 */
import { basename, dirname, extname, join } from "node:path";
import type { Choice, LayoutProfile } from "../autotune/profile.ts";
import { locName } from "./autotune_flags.ts";
import type { LayoutJob } from "./autotune_plan.ts";
import { renderLinePlot, type PlotSeries } from "./svg_plot.ts";

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
export function plotFile(base: string, gpuIndex: number, job: LayoutJob, manyGpus: boolean, manyLayouts: boolean): string {
  if (!manyGpus && !manyLayouts) return base;
  const ext = extname(base);
  const stem = basename(base, ext);
  const parts: string[] = [];
  if (manyLayouts) parts.push(`${job.names[0]!.replaceAll(":", "-")}-${locName(job.spec.locBytes)}`);
  if (manyGpus) parts.push(`gpu${gpuIndex}`);
  return join(dirname(base), `${stem}-${parts.join("-")}${ext}`);
}
