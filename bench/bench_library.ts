/**
 * The benchmark's reference kernels (build/libmla_kv_bench.so, built by `bun run build --bench`):
 * the peers engines already have (bench/peers.cuh: the plain warp copy, the seed row design), the
 * empty-kernel launch floor and a producer kernel. Bun-only, like the benchmark.
 */
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../ffi/package_root.ts";

const path = join(PACKAGE_ROOT, "build", "libmla_kv_bench.so");

/** One write as the peer kernels take it (int64 loc; bytes). */
export interface PeerWrite {
  rowBytes: number;
  elemBytes: number;
  cache: number;
  cacheRowStride: number;
  loc: number;
  n: number;
  nope: number;
  nopeRowStride: number;
  rope: number;
  ropeRowStride: number;
  /** Bytes of the nope part (the rest of rowBytes is rope). */
  nopeBytes: number;
}

export function openBenchLibrary() {
  if (!existsSync(path)) {
    throw new Error(`bench: ${path} is missing; run \`bun run build --bench\` first`);
  }
  const { symbols } = dlopen(path, {
    mla_kv_bench_last_error: { args: [], returns: FFIType.cstring },
    mla_kv_bench_empty: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    mla_kv_bench_plain: {
      args: [FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr,
        FFIType.i32, FFIType.ptr, FFIType.i32],
      returns: FFIType.i32,
    },
    mla_kv_bench_seed_row: {
      args: [FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.i64, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i64,
        FFIType.ptr, FFIType.i64],
      returns: FFIType.i32,
    },
    mla_kv_bench_block_per_chunk: {
      args: [FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.i64, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i64,
        FFIType.i32, FFIType.ptr, FFIType.i64, FFIType.i32],
      returns: FFIType.i32,
    },
    mla_kv_bench_producer: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i64], returns: FFIType.i32 },
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
    /** The launch floor, with or without PDL. */
    empty(stream: number, pdl: boolean): void {
      check(symbols.mla_kv_bench_empty(asPtr(stream), pdl ? 1 : 0), "mla_kv_bench_empty");
    },
    /** The plain warp copy; `earlySignal` signals dependents first thing instead of after the stores. */
    plain(stream: number, pdl: boolean, earlySignal: boolean, w: PeerWrite): void {
      check(symbols.mla_kv_bench_plain(asPtr(stream), pdl ? 1 : 0, earlySignal ? 1 : 0, w.rowBytes, asPtr(w.cache), w.cacheRowStride,
        asPtr(w.loc), w.n, asPtr(w.nope), w.nopeRowStride, asPtr(w.rope), w.ropeRowStride), "mla_kv_bench_plain");
    },
    /** The seed row design. */
    seedRow(stream: number, pdl: boolean, w: PeerWrite): void {
      check(symbols.mla_kv_bench_seed_row(asPtr(stream), pdl ? 1 : 0, w.elemBytes, asPtr(w.cache), w.cacheRowStride, asPtr(w.loc), w.n,
        asPtr(w.nope), w.nopeRowStride, asPtr(w.rope), w.ropeRowStride), "mla_kv_bench_seed_row");
    },
    /** One CTA per (row, 128-element chunk), one element a thread. */
    blockPerChunk(stream: number, pdl: boolean, w: PeerWrite): void {
      check(symbols.mla_kv_bench_block_per_chunk(asPtr(stream), pdl ? 1 : 0, w.elemBytes, asPtr(w.cache), w.cacheRowStride, asPtr(w.loc),
        w.n, asPtr(w.nope), w.nopeRowStride, w.nopeBytes, asPtr(w.rope), w.ropeRowStride, w.rowBytes - w.nopeBytes),
        "mla_kv_bench_block_per_chunk");
    },
  };
}
