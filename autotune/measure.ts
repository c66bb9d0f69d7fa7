/**
 * The autotuner's measurement: µs per call of one launch at one n, timed exactly as a write runs
 * in an engine's decode step: through the same launch helper as setMlaKvBuffer (so the same C
 * call, path code and PDL flag), one call per layer for several layers captured in a CUDA graph,
 * replayed, CUDA events, best of a few repetitions, on scratch buffers sized from free memory.
 */
import { deviceInfo } from "../src/device.ts";
import { launchWrite } from "../src/launch.ts";
import type { WriteLayout } from "../src/layout_key.ts";
import { Stream } from "../src/stream.ts";
import type { LaunchConfig } from "../src/vocabulary.ts";
import { writeDefaults } from "../src/write_defaults.ts";
import { timeGraphPerCall } from "./graph_timer.ts";
import { allocScratch, type Scratch } from "./scratch.ts";
import type { MeasureFn } from "./search.ts";

export interface Measurer {
  measure: MeasureFn;
  /** The scratch set timed on (its maxN bounds the buckets that can be tuned). */
  readonly scratch: Scratch;
  /** Whether launches use programmatic dependent launch. */
  readonly pdl: boolean;
  /** Calls measured so far. */
  readonly count: number;
  free(): void;
}

export interface MeasurerOptions {
  /** Repetitions of each timing; the best is kept (default 3). */
  tries?: number;
  /** Launch with PDL (default: what writes use, writeDefaults().pdl; sm_90+ only). */
  pdl?: boolean;
  /** A cap on the scratch set's bytes (default: from the memory free now). */
  budgetBytes?: number;
}

/** Scratch buffers and a stream for timing `layout` on `device`. */
export function createMeasurer(device: number, layout: WriteLayout, options: MeasurerOptions = {}): Measurer {
  const scratch = allocScratch(layout, { device, budgetBytes: options.budgetBytes });
  const pdl = (options.pdl ?? writeDefaults().pdl) && deviceInfo(device).computeCapability[0] >= 9;
  const tries = options.tries ?? 3;
  const rowBytes = scratch.plan(0, 1).rowBytes;
  let stream: Stream;
  try {
    stream = Stream.create(device);
  } catch (error) {
    scratch.free();
    throw error;
  }
  let count = 0;
  return {
    scratch,
    pdl,
    get count() {
      return count;
    },
    measure(config: LaunchConfig, n: number): number {
      ++count;
      if (n > scratch.maxN) throw new RangeError(`n = ${n} is more than the ${scratch.maxN} rows the scratch set holds`);
      const plans = Array.from({ length: scratch.layers }, (_, layer) => scratch.plan(layer, n));
      const extras = { stream: stream.handle, pdl, reservedSlot: -1, scale: 1 };
      // A guess from the copy rate sizes the replays so each repetition runs ~100 µs.
      const expectUs = 1.5 + (2 * n * rowBytes) / 2.5e6;
      return timeGraphPerCall(stream, scratch.layers, (layer) => launchWrite(plans[layer]!, config, extras), {
        expectUs,
        tries,
        replays: Math.max(2, Math.min(32, Math.ceil(100 / (expectUs * scratch.layers)))),
      }).us;
    },
    free() {
      stream.destroy();
      scratch.free();
    },
  };
}
