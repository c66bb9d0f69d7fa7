/**
 * Scratch buffers for timing writes under realistic conditions, allocated and freed by mla-kv
 * itself (never the user's tensors), sized from the memory the GPU has free: an engine allocates
 * its KV pool before its first write, so the tuner must fit in what is left.
 *
 * - caches: `layers` of them, together at least {@link COLD_L2_FACTOR} × the L2 where memory
 *   allows, so random slots land in cold cache lines as they do in a real pool;
 * - sources: one set of up to `maxN` rows shared by the layers: in an engine kNope and kRope were
 *   just written by the kernel before, so they are L2-warm at small n, as here;
 * - loc: random unique slots per layer.
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { deviceFreeMemory, deviceInfo } from "../src/device.ts";
import type { DType } from "../src/dtypes.ts";
import { planSetMlaKvBuffer, type SetMlaKvBufferPlan } from "../src/layout.ts";
import { layoutRowBytes, type WriteLayout } from "../src/layout_key.ts";
import { allocTensor, fromHost, type DeviceTensor } from "../src/tensor.ts";
import { isPaged, isQuantized } from "../src/vocabulary.ts";
import { pageBytes } from "../src/write_format.ts";
import { Random } from "./random.ts";

/** The caches together are at least this many L2s when memory allows. */
export const COLD_L2_FACTOR = 4;
/** Memory left free for others while tuning. */
export const SCRATCH_RESERVE_BYTES = 256 * 2 ** 20;
/** The most the scratch set takes, whatever is free. */
export const SCRATCH_MAX_BYTES = 1536 * 2 ** 20;
/** The largest n timed: the last bucket's. */
export const SCRATCH_MAX_N = 65536;

export interface Scratch {
  readonly layers: number;
  /** The largest n the set can time (every bucket up to it). */
  readonly maxN: number;
  /** Slots in each layer's cache. */
  readonly capacity: number;
  readonly bytes: number;
  /** The tensors of a write of the first n rows into `layer` (kRope undefined for fp8_indexer). */
  views(layer: number, n: number): { cache: DeviceTensor; loc: DeviceTensor; kNope: DeviceTensor; kRope: DeviceTensor | undefined };
  /** The plan of that write, as setMlaKvBuffer makes it. */
  plan(layer: number, n: number): SetMlaKvBufferPlan;
  free(): void;
}

/** How a layout's buffers are typed: a copy moves bytes, so it is timed as u8 rows of its bytes. */
function dtypesOf(layout: WriteLayout): { source: DType; cache: DType } {
  if (!isQuantized(layout.format)) return { source: "u8", cache: "u8" };
  const cache: DType = layout.format === "fp8_e4m3" || layout.format === "fp8_e5m2" ? layout.format : "u8";
  return { source: layout.sourceDtype!, cache };
}

/** Bytes one slot of the layout's cache takes (a paged format: its share of a page). */
function slotBytes(layout: WriteLayout): number {
  return isPaged(layout.format) ? pageBytes(layout.format as "fp8_ds_v4" | "fp8_indexer", layout.pageSize) / layout.pageSize : layoutRowBytes(layout);
}

/**
 * The shape of a scratch set for `layout` within `budget` bytes: the most layers (up to 8) whose
 * caches of `capacity >= maxN` slots fit, maxN shrinking by halves when even one layer does not.
 * Null when not even n = 1 fits.
 */
export function scratchShape(layout: WriteLayout, budget: number, l2Bytes: number): { layers: number; maxN: number; capacity: number } | null {
  const slot = slotBytes(layout);
  const sourceRow = layout.nopeBytes + layout.ropeBytes;
  for (let maxN = SCRATCH_MAX_N; maxN >= 1; maxN /= 2) {
    const pagesRound = isPaged(layout.format) ? layout.pageSize : 1;
    for (const layers of [8, 4, 2, 1]) {
      const cold = Math.ceil((COLD_L2_FACTOR * l2Bytes) / (layers * slot));
      const capacity = Math.ceil(Math.max(maxN, Math.min(cold, 4 * maxN)) / pagesRound) * pagesRound;
      const bytes = layers * (capacity * slot + maxN * 8) + maxN * sourceRow;
      if (bytes <= budget) return { layers, maxN, capacity };
    }
  }
  return null;
}

/** Unique random slots in [0, capacity), seeded. */
export function randomSlots(n: number, capacity: number, seed: number): Int32Array {
  return Int32Array.from(new Random(seed).uniqueSlots(n, capacity));
}

/**
 * Allocates the scratch set for `layout` on `device` from the memory free now.
 *
 * @throws {Error} when not even one layer of one row fits; MlaKvError from allocation.
 */
export function allocScratch(layout: WriteLayout, options: { device?: number; budgetBytes?: number; seed?: number } = {}): Scratch {
  const device = options.device ?? 0;
  const budget = options.budgetBytes ?? Math.min(SCRATCH_MAX_BYTES, Math.max(0, deviceFreeMemory(device) - SCRATCH_RESERVE_BYTES));
  const shape = scratchShape(layout, budget, deviceInfo(device).l2Bytes);
  if (shape === null) throw new Error(`not enough free GPU memory to time writes (${Math.round(budget / 2 ** 20)} MiB usable)`);
  const { layers, maxN, capacity } = shape;
  const types = dtypesOf(layout);
  const elem = types.source === "u8" ? 1 : 2;
  const owned: DeviceTensor[] = [];
  const track = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  try {
    const cacheShape = isPaged(layout.format)
      ? [capacity / layout.pageSize, pageBytes(layout.format as "fp8_ds_v4" | "fp8_indexer", layout.pageSize)]
      : [capacity, layoutRowBytes(layout)];
    const caches = Array.from({ length: layers }, () => track(allocTensor(types.cache, cacheShape, { device })));
    // A part of 0 elements still gets one column, narrowed away: a zero-size allocation cannot exist.
    const nopeElems = layout.nopeBytes / elem, ropeElems = layout.ropeBytes / elem;
    const nope = track(allocTensor(types.source, [maxN, Math.max(1, nopeElems)], { device }));
    const rope = track(allocTensor(types.source, [maxN, Math.max(1, ropeElems)], { device }));
    // Finite, non-zero values (0x3c3c is 1.0586 in bf16, 1.0586 in fp16): timing on zeros can flatter a kernel.
    fill(nope, maxN * Math.max(1, nopeElems) * elem, 0x3c);
    fill(rope, maxN * Math.max(1, ropeElems) * elem, 0x3c);
    const loc = Array.from({ length: layers }, (_, l) => {
      const slots = randomSlots(maxN, capacity, (options.seed ?? 7) + l * 7919);
      return track(layout.locBytes === 8 ? fromHost(widen(slots), "i64", [maxN], { device }) : fromHost(slots, "i32", [maxN], { device }));
    });
    const planOptions = {
      format: layout.format === "copy" ? undefined : layout.format === "fp8_e4m3" || layout.format === "fp8_e5m2" ? ("fp8" as const) : layout.format,
      pageSize: isPaged(layout.format) ? layout.pageSize : undefined,
      scaleRule: layout.scaleRule ?? undefined,
    };
    const bytes = owned.reduce((sum, t) => sum + t.numel * t.elementBytes, 0);
    return {
      layers,
      maxN,
      capacity,
      bytes,
      views(layer, n) {
        return {
          cache: caches[layer]!,
          loc: loc[layer]!.narrow(0, 0, n),
          kNope: nope.narrow(0, 0, n).narrow(1, 0, nopeElems),
          kRope: layout.format === "fp8_indexer" ? undefined : rope.narrow(0, 0, n).narrow(1, 0, ropeElems),
        };
      },
      plan(layer, n) {
        const v = this.views(layer, n);
        return planSetMlaKvBuffer(v.cache, v.loc, v.kNope, v.kRope, planOptions);
      },
      free() {
        for (const t of owned) t.free();
      },
    };
  } catch (error) {
    for (const t of owned) t.free();
    throw error;
  }
}

function fill(t: DeviceTensor, bytes: number, value: number): void {
  check(native().mla_kv_memset(t.device, t.ptr, value, bytes, 0), "mla_kv_memset");
}

/**
 * Non-negative int32 slots as little-endian int64 without a BigInt per element: 65536 BigInt
 * conversions per layer would cost more than the rest of the set-up.
 */
export function widen(slots: Int32Array): BigInt64Array {
  const words = new Int32Array(slots.length * 2);
  for (let i = 0; i < slots.length; ++i) words[2 * i] = slots[i]!;
  return new BigInt64Array(words.buffer);
}
