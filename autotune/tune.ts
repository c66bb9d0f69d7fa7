/**
 * Tuning one layout on one GPU: what can run there, timed on scratch buffers that fit the memory
 * free now, searched bucket by bucket. What first use, `autotune()` and `bun run autotune` run.
 */
import { deviceFacts } from "../src/device.ts";
import { pathMayRun, runnablePaths } from "../src/eligibility.ts";
import { layoutGeometry, type WriteLayout } from "../src/layout_key.ts";
import { bucketOf, PATHS, type LaunchConfig } from "../src/vocabulary.ts";
import { createMeasurer, type MeasurerOptions } from "./measure.ts";
import { tuneLayoutWithStats, type MeasureFn, type TuneMethod, type TuneOptions, type TuneResult } from "./search.ts";

export interface TuneRequest {
  method?: TuneMethod;
  /** Called after each bucket: buckets done, buckets in all, which n was just tuned. */
  onProgress?: (done: number, total: number, label: string) => void;
  /** Milliseconds since the epoch, for tunedAt and tuneMs. */
  now?: () => number;
  /** Options of the measurement (tries, PDL, a cap on scratch memory). */
  measure?: MeasurerOptions;
  /**
   * Times a launch instead of the GPU (tests): with it no scratch is allocated, and every path
   * this GPU and layout allow is searched up to the last bucket.
   */
  measureWith?: MeasureFn;
}

/** What the GPU and layout allow: the paths that can run and a predicate for single launches. */
export function tuningSpace(device: number, layout: WriteLayout): { paths: ReturnType<typeof runnablePaths>; allowed: (c: LaunchConfig) => boolean } {
  const facts = deviceFacts(device);
  const geometry = layoutGeometry(layout);
  return { paths: runnablePaths(PATHS, facts, geometry), allowed: (c) => pathMayRun(c, facts, geometry) };
}

/** What a tune of one layout on one GPU runs on: the timing, the designs that can run, PDL, buckets. */
export type DeviceTuner = Pick<TuneOptions, "measure" | "paths" | "allowed" | "pdl" | "maxBucket"> & {
  /** Frees the scratch buffers and stream the timing runs on. */
  free(): void;
};

/**
 * The tuner of `layout` on `device`: its space, and a measurer on scratch buffers sized from the
 * memory free now (buckets past the largest n they hold are not tuned). Free it when done.
 */
export function deviceTuner(device: number, layout: WriteLayout, options?: MeasurerOptions): DeviceTuner {
  const { paths, allowed } = tuningSpace(device, layout);
  const measurer = createMeasurer(device, layout, options);
  return {
    measure: measurer.measure,
    paths,
    allowed,
    pdl: measurer.pdl,
    maxBucket: bucketOf(measurer.scratch.maxN),
    free: () => measurer.free(),
  };
}

/** Tunes `layout` on `device`. Buckets past the largest n the free memory allows are not tuned. */
export function tuneOnDevice(device: number, layout: WriteLayout, request: TuneRequest = {}): TuneResult {
  if (request.measureWith !== undefined) {
    const { paths, allowed } = tuningSpace(device, layout);
    return tuneLayoutWithStats({ ...request, measure: request.measureWith, paths, allowed, pdl: request.measure?.pdl ?? true });
  }
  const { free, ...tuner } = deviceTuner(device, layout, request.measure);
  try {
    return tuneLayoutWithStats({ ...request, ...tuner });
  } finally {
    free();
  }
}
