/**
 * What the GPU suites share: whether a usable GPU is here (and if not, the reason that goes into
 * the skipped describe's name), seeded random bytes, unique random slots, poisoning, and the plain
 * host reference of the write that every GPU result is compared with byte for byte.
 */
import { deviceInfo, fromHost, gpuProblem, type DeviceInfo } from "../../mod.ts";
import { native } from "../../ffi/native.ts";
import type { DeviceTensor } from "../../src/tensor.ts";

export type GpuProbe = { ok: true; info: DeviceInfo } | { ok: false; reason: string };

let probed: GpuProbe | undefined;

/** Probes device 0 once; never throws. */
export function probeGpu(): GpuProbe {
  if (probed) return probed;
  const problem = gpuProblem(0);
  // The whole reason, on one line (it goes into the name of every skipped test): a missing
  // library's message lists each path tried with its reason, one a line.
  probed = problem === null
    ? { ok: true, info: deviceInfo(0) }
    : { ok: false, reason: `${problem.code}: ${problem.message.split("\n").map((l) => l.trim()).join(" ")}` };
  return probed;
}

/** `name`, or `name (skipped: reason)` when there is no GPU, so the skip shows in the test list. */
export function gpuSuiteName(name: string): string {
  const gpu = probeGpu();
  return gpu.ok ? `${name} on ${gpu.info.name}` : `${name} (skipped: ${gpu.reason})`;
}

/** The seeded generator of the GPU suites, so failures reproduce from the printed seed. */
export { Random as Rng } from "../../autotune/random.ts";

/** A loc tensor on device 0 holding `slots` as int32 or int64. */
export function locTensor(dtype: "i32" | "i64", slots: readonly number[]): DeviceTensor {
  return dtype === "i32"
    ? fromHost(Int32Array.from(slots), "i32", [slots.length])
    : fromHost(BigInt64Array.from(slots, (s) => BigInt(s)), "i64", [slots.length]);
}

/** The poison byte the cache is filled with before every write: any byte left unwritten shows. */
export const POISON = 0xa5;

/** Fills a tensor's whole allocation span with POISON on the device. */
export function poison(tensor: DeviceTensor, bytes: number): void {
  const status = native().mla_kv_memset(tensor.device, tensor.ptr, POISON, bytes, 0);
  if (status !== 0) throw new Error(`mla_kv_memset failed: ${native().mla_kv_last_error()}`);
}

/** The bytes of a host array. */
export function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export interface ReferenceWrite {
  cache: Uint8Array; // the whole cache as it was before the write (modified in place)
  cacheRowStride: number;
  capacity: number;
  loc: readonly number[];
  nope: Uint8Array; // the nope source span, row i at i * nopeRowStride
  nopeRowStride: number;
  nopeBytes: number;
  rope: Uint8Array;
  ropeRowStride: number;
  ropeBytes: number;
}

/** The plain reference: row i = [nope[i] | rope[i]] into cache[loc[i]] for 0 <= loc[i] < capacity. */
export function referenceWrite(w: ReferenceWrite): Uint8Array {
  w.loc.forEach((slot, i) => {
    if (slot < 0 || slot >= w.capacity) return;
    const dst = slot * w.cacheRowStride;
    w.cache.set(w.nope.subarray(i * w.nopeRowStride, i * w.nopeRowStride + w.nopeBytes), dst);
    w.cache.set(w.rope.subarray(i * w.ropeRowStride, i * w.ropeRowStride + w.ropeBytes), dst + w.nopeBytes);
  });
  return w.cache;
}

/** null when equal, else where the first difference is, in rows of `rowStride` bytes. */
export function firstDifference(got: Uint8Array, want: Uint8Array, rowStride: number): string | null {
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  if (Buffer.compare(got, want) === 0) return null;
  let i = 0;
  while (got[i] === want[i]) ++i;
  let bad = 0;
  for (let j = i; j < got.length; ++j) if (got[j] !== want[j]) ++bad;
  return `first difference at byte ${i} (row ${Math.floor(i / rowStride)}, offset ${i % rowStride}): got ${got[i]} want ${want[i]}; ${bad} bytes differ`;
}
