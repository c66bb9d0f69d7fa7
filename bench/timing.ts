/**
 * How the benchmark's comparison parts time their variants: 8 layers per CUDA graph, replayed,
 * CUDA events (autotune/graph_timer.ts), each variant re-timed in interleaved rounds and its best
 * kept, so slow drift of clocks or memory affects every variant alike.
 */
import type { Stream } from "../mod.ts";
import { timeGraphPerCall } from "../autotune/graph_timer.ts";

export const LAYERS = 8;
export const ROUNDS = 3;

/** Times each variant `rounds` times, interleaved, and keeps each one's best. */
export function sideBySide<K extends string>(variants: Record<K, () => number>, rounds = ROUNDS): Record<K, number> {
  const best = Object.fromEntries(Object.keys(variants).map((k) => [k, Infinity])) as Record<K, number>;
  for (let round = 0; round < rounds; ++round) {
    for (const k of Object.keys(variants) as K[]) best[k] = Math.min(best[k], variants[k]());
  }
  return best;
}

/** A timer of `launch(layer)` at n rows (µs per layer), its replays sized from the bytes moved. */
export function timer(stream: Stream, n: number, bytesPerRow: number) {
  return (launch: (layer: number) => void) => () =>
    timeGraphPerCall(stream, LAYERS, launch, { expectUs: 1 + (n * bytesPerRow) / 2.5e6 }).us;
}
