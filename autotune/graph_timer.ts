/**
 * Times a write the way an inference engine runs it: one call per layer for `layers` layers,
 * captured into one CUDA graph, replayed back to back, timed with CUDA events; best of several
 * repetitions. Shared by the autotuner and `bun run bench`, so both measure the same thing.
 *
 * Why a graph: engines replay decode steps as graphs, where launch gaps shrink to the GPU's own
 * per-node cost; timing eager launches from the host would measure bun:ffi and cudaLaunchKernel
 * instead of the kernel. Why several layers: each layer writes a different cache, so a replay
 * never finds the previous call's rows in L2.
 */
import { Event, Stream } from "../src/stream.ts";

export interface GraphTiming {
  /** Best (smallest) µs per call over the repetitions. */
  us: number;
  /** Every repetition's µs per call, for spread. */
  samples: number[];
}

export interface GraphTimerOptions {
  /** Replays between the two events of one repetition (default: enough for ~200 µs of work). */
  replays?: number;
  /** Repetitions; the best is kept (default 5). */
  tries?: number;
  /** A guess of µs per call, used to pick `replays` when it is not given. */
  expectUs?: number;
}

/**
 * Captures `launch(layer)` for every layer into one graph on `stream` and returns µs per call.
 * `launch` must only enqueue work on `stream` (no synchronisation: it runs inside a capture).
 */
export function timeGraphPerCall(
  stream: Stream,
  layers: number,
  launch: (layer: number) => void,
  options: GraphTimerOptions = {},
): GraphTiming {
  using graph = stream.capture(() => {
    for (let layer = 0; layer < layers; ++layer) launch(layer);
  });
  const expectUs = Math.max(options.expectUs ?? 5, 0.5);
  const replays = options.replays ?? Math.max(2, Math.min(64, Math.ceil(200 / (expectUs * layers))));
  const tries = options.tries ?? 5;
  using start = Event.create(stream.device);
  using end = Event.create(stream.device);
  graph.replay(stream); // warm-up: first replay uploads the graph
  const samples: number[] = [];
  for (let t = 0; t < tries; ++t) {
    start.record(stream);
    for (let r = 0; r < replays; ++r) graph.replay(stream);
    end.record(stream);
    samples.push((end.elapsedSince(start) * 1000) / (replays * layers));
  }
  return { us: Math.min(...samples), samples };
}
