/**
 * Scratch buffers for timing writes under realistic conditions, allocated and freed by mla-kv
 * itself (never the user's tensors): `layers` caches that together dwarf the L2, sources for up
 * to `maxN` rows per layer, and random unique slots per layer.
 */
import { allocTensor, fromHost, type DeviceTensor } from "../src/tensor.ts";
import { dtypeBytes, type DType } from "../src/dtypes.ts";
import { check, native } from "../ffi/native.ts";
import { Random } from "./random.ts";

export interface ScratchLayout {
  /** The sources' dtype (and the cache's, unless cacheRowBytes is given). */
  dtype: DType;
  nopeElems: number;
  ropeElems: number;
  locBytes: 4 | 8;
  /** The cache's rows when they hold another format than the sources (a quantizing write). */
  cache?: { dtype: DType; width: number };
}

export interface Scratch {
  layers: number;
  maxN: number;
  capacity: number;
  caches: DeviceTensor[];
  nope: DeviceTensor[];
  rope: DeviceTensor[];
  loc: DeviceTensor[];
  /** kNope/kRope/loc views of the first n rows of `layer`. */
  views(layer: number, n: number): { cache: DeviceTensor; loc: DeviceTensor; kNope: DeviceTensor; kRope: DeviceTensor };
  free(): void;
}

/** Unique random slots in [0, capacity), seeded. */
export function randomSlots(n: number, capacity: number, seed: number): Int32Array {
  return Int32Array.from(new Random(seed).uniqueSlots(n, capacity));
}

/**
 * Allocates the scratch set. Memory: layers × (capacity + maxN) × row bytes, about 1.3 GB for the
 * defaults with 1152-byte rows. Source bytes are filled with a non-zero pattern on the device
 * (timing on zeros can flatter a kernel); their values do not matter for timing.
 */
export function allocScratch(layout: ScratchLayout, options: { device?: number; layers?: number; maxN?: number; capacity?: number; seed?: number } = {}): Scratch {
  const device = options.device ?? 0;
  const layers = options.layers ?? 8;
  const maxN = options.maxN ?? 65536;
  const capacity = Math.max(options.capacity ?? 128 * 1024, maxN);
  const eb = dtypeBytes(layout.dtype);
  const width = layout.nopeElems + layout.ropeElems;
  const owned: DeviceTensor[] = [];
  const track = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  try {
    const caches: DeviceTensor[] = [], nope: DeviceTensor[] = [], rope: DeviceTensor[] = [], loc: DeviceTensor[] = [];
    for (let l = 0; l < layers; ++l) {
      const cache = layout.cache ?? { dtype: layout.dtype, width };
      caches.push(track(allocTensor(cache.dtype, [capacity, cache.width], { device })));
      // A layout may have no rope part (or no nope part); a zero-width allocation cannot exist, so
      // such a part gets one column that views narrow away.
      nope.push(track(allocTensor(layout.dtype, [maxN, Math.max(1, layout.nopeElems)], { device })));
      rope.push(track(allocTensor(layout.dtype, [maxN, Math.max(1, layout.ropeElems)], { device })));
      fill(nope[l]!, maxN * Math.max(1, layout.nopeElems) * eb, 0x3c);
      fill(rope[l]!, maxN * Math.max(1, layout.ropeElems) * eb, 0x5a);
      const slots = randomSlots(maxN, capacity, (options.seed ?? 7) + l * 7919);
      loc.push(track(layout.locBytes === 8 ? fromHost(widen(slots), "i64", [maxN], { device }) : fromHost(slots, "i32", [maxN], { device })));
    }
    return {
      layers, maxN, capacity, caches, nope, rope, loc,
      views(layer, n) {
        return {
          cache: caches[layer]!,
          loc: loc[layer]!.narrow(0, 0, n),
          kNope: nope[layer]!.narrow(0, 0, n).narrow(1, 0, layout.nopeElems),
          kRope: rope[layer]!.narrow(0, 0, n).narrow(1, 0, layout.ropeElems),
        };
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
