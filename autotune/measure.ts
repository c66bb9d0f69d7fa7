/**
 * The autotuner's measurement: µs per call of one launch configuration at one n, on scratch
 * buffers that mla-kv allocates and frees itself, timed exactly like `bun run bench` (8 layers a
 * CUDA graph, CUDA events, best of a few repetitions).
 */
import { check, native } from "../ffi/native.ts";
import { MLA_KV_PATH_TMA, MLA_KV_PATH_VECTOR } from "../ffi/symbols.ts";
import { Stream } from "../src/stream.ts";
import type { LaunchConfig } from "../src/dispatch.ts";
import { timeGraphPerCall } from "./graph_timer.ts";
import { allocScratch } from "./scratch.ts";
import type { MeasureFn } from "./search.ts";

export interface MeasuredLayout {
  nopeBytes: number;
  ropeBytes: number;
  locBytes: 4 | 8;
}

export interface Measurer {
  measure: MeasureFn;
  /** Calls measured so far. */
  readonly count: number;
  free(): void;
}

/**
 * Scratch buffers and a stream for timing `layout` on `device`, up to `maxN` rows a call. The
 * write is byte-exact whatever the dtype, so bytes are timed as u8 rows of the same size.
 */
export function createMeasurer(device: number, layout: MeasuredLayout, options: { maxN?: number; tries?: number } = {}): Measurer {
  const maxN = options.maxN ?? 65536;
  const scratch = allocScratch(
    { dtype: "u8", nopeElems: layout.nopeBytes, ropeElems: layout.ropeBytes, locBytes: layout.locBytes },
    { device, maxN },
  );
  const stream = Stream.create(device);
  const rowBytes = layout.nopeBytes + layout.ropeBytes;
  let count = 0;
  return {
    get count() {
      return count;
    },
    measure(cfg: LaunchConfig, n: number): number {
      ++count;
      // The C call directly, not setMlaKvBuffer: the scratch tensors are known-good and
      // contiguous, and dispatch (which may be what is being tuned) must stay out of the way.
      const path = cfg.path === "tma" ? MLA_KV_PATH_TMA : MLA_KV_PATH_VECTOR;
      const lib = native();
      // A guess from the copy rate sizes the replays so each repetition runs ~100 µs.
      const expectUs = 1.5 + (2 * n * rowBytes) / 2.5e6;
      return timeGraphPerCall(stream, scratch.layers, (layer) => {
        check(lib.mla_kv_set_kv_buffer(device, stream.handle, scratch.caches[layer]!.ptr, scratch.capacity, rowBytes,
          scratch.loc[layer]!.ptr, layout.locBytes, n, scratch.nope[layer]!.ptr, layout.nopeBytes, layout.nopeBytes,
          scratch.rope[layer]!.ptr, layout.ropeBytes, layout.ropeBytes, path, cfg.warps, cfg.rowsPerWarp, 0), "mla_kv_set_kv_buffer");
      }, { expectUs, tries: 3, replays: Math.max(2, Math.min(32, Math.ceil(100 / (expectUs * scratch.layers)))) }).us;
    },
    free() {
      stream.destroy();
      scratch.free();
    },
  };
}
