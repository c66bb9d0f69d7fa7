/**
 * The benchmark's reference kernels (build/libmla_kv_bench.so, built by `bun run build --bench`):
 * the baseline design, the empty-kernel launch floor and a producer kernel. Bun-only, like the
 * benchmark.
 */
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../ffi/package_root.ts";

const path = join(PACKAGE_ROOT, "build", "libmla_kv_bench.so");

export function openBenchLibrary() {
  if (!existsSync(path)) {
    throw new Error(`bench: ${path} is missing; run \`bun run build --bench\` first`);
  }
  const { symbols } = dlopen(path, {
    mla_kv_bench_last_error: { args: [], returns: FFIType.cstring },
    mla_kv_bench_empty: { args: [FFIType.ptr], returns: FFIType.i32 },
    mla_kv_bench_producer: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i64], returns: FFIType.i32 },
    mla_kv_bench_baseline: {
      args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i64, FFIType.ptr, FFIType.i64, FFIType.ptr, FFIType.i64,
        FFIType.i64, FFIType.ptr, FFIType.i64, FFIType.i64],
      returns: FFIType.i32,
    },
  });
  // Device addresses and streams travel as plain numbers; bun:ffi types them as branded Pointers.
  const asPtr = (address: number) => (address === 0 ? null : (address as Pointer));
  const check = (status: number, what: string) => {
    if (status !== 0) throw new Error(`${what}: ${symbols.mla_kv_bench_last_error()}`);
  };
  return {
    /** x [n, 576] bf16 → kNope [n, 512], kRope [n, 64] (contiguous), PDL-aware. */
    producer(stream: number, x: number, nope: number, rope: number, n: number): void {
      check(symbols.mla_kv_bench_producer(asPtr(stream), asPtr(x), asPtr(nope), asPtr(rope), n), "mla_kv_bench_producer");
    },
    empty(stream: number): void {
      check(symbols.mla_kv_bench_empty(asPtr(stream)), "mla_kv_bench_empty");
    },
    baseline(stream: number, elemBytes: number, cache: number, cacheRowStride: number, loc: number, n: number,
      nope: number, nopeRowStride: number, nopeBytes: number, rope: number, ropeRowStride: number, ropeBytes: number): void {
      check(symbols.mla_kv_bench_baseline(asPtr(stream), elemBytes, asPtr(cache), cacheRowStride, asPtr(loc), n, asPtr(nope),
        nopeRowStride, nopeBytes, asPtr(rope), ropeRowStride, ropeBytes), "mla_kv_bench_baseline");
    },
  };
}
