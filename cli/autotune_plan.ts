/**
 * What one run of `bun run autotune` tunes: the GPUs (one per distinct setup) and the layout keys
 * (one per distinct row size), each a tune unless a profile is stored already.
 */
import { specLayouts, specName } from "../autotune/autotune.ts";
import { identityKey } from "../autotune/profile.ts";
import { layoutRowBytes, type WriteLayout } from "../src/layout_key.ts";
import { locName, type CliOptions } from "./autotune_flags.ts";
import type { GpuInfo } from "./autotune_gpu.ts";

/** One layout key to tune, and the specs (and loc) that share it. */
export interface LayoutJob {
  key: string;
  layout: WriteLayout;
  names: string[];
  rowBytes: number;
}

export function layoutJobs(opts: CliOptions): LayoutJob[] {
  // Spread first: a layout's specs are all there only once the iteration has ended.
  return [...specLayouts(opts.layouts, opts.locs)].map(({ key, layout, specs }) => ({
    key,
    layout,
    names: [...new Set(specs.map(specName))],
    rowBytes: layoutRowBytes(layout),
  }));
}

/** How the output names a job: `bf16:512+64 = fp16:512+64, i64 loc`. */
export function jobLabel(job: LayoutJob): string {
  return `${job.names.join(" = ")}, ${locName(job.layout.locBytes)} loc`;
}

/**
 * The GPUs to tune: those asked for (or all), then one of each setup, since identical GPUs share
 * one profile file. A device index that is not there comes back as the sentence that says so.
 */
export function chooseGpus(all: GpuInfo[], devices: number[] | null, note: (line: string) => void): GpuInfo[] | { unknown: string } {
  let chosen: GpuInfo[];
  if (devices === null) {
    chosen = all;
  } else {
    chosen = [];
    for (const d of devices) {
      const g = all.find((x) => x.index === d);
      if (g === undefined) return { unknown: `--device ${d} is not a GPU here (${gpusHere(all)})` };
      chosen.push(g);
    }
  }
  const gpus: GpuInfo[] = [];
  for (const g of chosen) {
    const twin = gpus.find((x) => identityKey(x.identity) === identityKey(g.identity));
    if (twin === undefined) gpus.push(g);
    else note(`GPU ${g.index} is the same setup as GPU ${twin.index} (${twin.name}); one profile serves both.`);
  }
  return gpus;
}

/** "this machine has 1 GPU: index 0", "this machine has 3 GPUs: indices 0, 1 and 2". */
function gpusHere(all: GpuInfo[]): string {
  const indices = all.map((g) => String(g.index));
  if (indices.length === 1) return `this machine has 1 GPU: index ${indices[0]}`;
  return `this machine has ${indices.length} GPUs: indices ${indices.slice(0, -1).join(", ")} and ${indices.at(-1)}`;
}
