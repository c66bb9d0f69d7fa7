/**
 * The autotuner's measurement: µs per call of one launch configuration at one n, on scratch
 * buffers that mla-kv allocates and frees itself, timed exactly like `bun run bench` (8 layers a
 * CUDA graph, CUDA events, best of a few repetitions).
 */
import { check, native } from "../ffi/native.ts";
import { MLA_KV_FORMAT_CODES, MLA_KV_PATH_CODES, MLA_KV_SOURCE_CODES } from "../ffi/abi.ts";
import { Stream } from "../src/stream.ts";
import type { LaunchConfig, LayoutKeyInput } from "../src/dispatch.ts";
import { layoutRowBytes } from "../src/layout.ts";
import { isQuantized } from "../src/write_format.ts";
import { timeGraphPerCall } from "./graph_timer.ts";
import { allocScratch } from "./scratch.ts";
import type { MeasureFn } from "./search.ts";


export interface Measurer {
  measure: MeasureFn;
  /** Calls measured so far. */
  readonly count: number;
  free(): void;
}

/**
 * Scratch buffers and a stream for timing `layout` on `device`, up to `maxN` rows a call. A copy
 * is byte-exact whatever the dtype, so its bytes are timed as u8 rows of the same size; a
 * quantizing write is timed from bf16/fp16 sources (finite, non-zero values) into rows of its
 * format.
 */
export function createMeasurer(device: number, layout: LayoutKeyInput, options: { maxN?: number; tries?: number } = {}): Measurer {
  const maxN = options.maxN ?? 65536;
  const locBytes = layout.locBytes as 4 | 8;
  const quantized = isQuantized(layout.format) ? layout.format : null;
  const nopeElems = quantized ? layout.nopeBytes / 2 : layout.nopeBytes;
  const ropeElems = quantized ? layout.ropeBytes / 2 : layout.ropeBytes;
  const rowBytes = layoutRowBytes(layout);
  const sourceDtype = layout.sourceDtype ?? "bf16";
  const scratch = allocScratch(
    { dtype: quantized ? sourceDtype : "u8", nopeElems, ropeElems, locBytes, cache: { dtype: "u8", width: rowBytes } },
    { device, maxN },
  );
  const stream = Stream.create(device);
  let count = 0;
  return {
    get count() {
      return count;
    },
    measure(cfg: LaunchConfig, n: number): number {
      ++count;
      // The C call directly, not setMlaKvBuffer: the scratch tensors are known-good and
      // contiguous, and dispatch (which may be what is being tuned) must stay out of the way.
      const path = MLA_KV_PATH_CODES[cfg.path];
      const lib = native();
      // A guess from the copy rate sizes the replays so each repetition runs ~100 µs.
      const expectUs = 1.5 + (2 * n * rowBytes) / 2.5e6;
      const write = quantized
        ? (layer: number) =>
            check(lib.mla_kv_set_kv_buffer_quantized(device, stream.handle, MLA_KV_FORMAT_CODES[quantized], 0, scratch.caches[layer]!.ptr,
              scratch.capacity, rowBytes, 0, scratch.loc[layer]!.ptr, locBytes, n,
              MLA_KV_SOURCE_CODES[sourceDtype], scratch.nope[layer]!.ptr, layout.nopeBytes,
              nopeElems, scratch.rope[layer]!.ptr, layout.ropeBytes, ropeElems, 1, -1, path, cfg.warps, cfg.rowsPerWarp, 0),
              "mla_kv_set_kv_buffer_quantized")
        : (layer: number) =>
            check(lib.mla_kv_set_kv_buffer(device, stream.handle, scratch.caches[layer]!.ptr, scratch.capacity, rowBytes,
              scratch.loc[layer]!.ptr, locBytes, n, scratch.nope[layer]!.ptr, layout.nopeBytes, layout.nopeBytes,
              scratch.rope[layer]!.ptr, layout.ropeBytes, layout.ropeBytes, -1, path, cfg.warps, cfg.rowsPerWarp, 0),
              "mla_kv_set_kv_buffer");
      return timeGraphPerCall(stream, scratch.layers, write, {
        expectUs,
        tries: 3,
        replays: Math.max(2, Math.min(32, Math.ceil(100 / (expectUs * scratch.layers)))),
      }).us;
    },
    free() {
      stream.destroy();
      scratch.free();
    },
  };
}
