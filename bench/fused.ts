/**
 * The benchmark's comparisons beyond the plain write, each timed like the rest of `bun run bench`
 * (bench/timing.ts):
 *
 * - the reserved slot: the same write with and without `reservedSlot`.
 * - programmatic dependent launch: a producer kernel followed by the write, with and without PDL.
 *
 * Quantize-on-write has its own part, bench/fused_fp8.ts.
 */
import { allocTensor, setMlaKvBuffer, type Stream } from "../mod.ts";
import { allocScratch } from "../autotune/scratch.ts";
import { copyLayout } from "../src/layout_key.ts";
import type { openBenchLibrary } from "./bench_library.ts";
import { LAYERS, sideBySide, timer } from "./timing.ts";

/** Bytes of one bf16 source row (512 + 64 elements). */
const SOURCE_ROW_BYTES = 1152;

export interface PdlRow {
  n: number;
  producer: number;
  producerThenWrite: number;
  producerThenWritePdl: number;
}

export interface ReservedSlotRow {
  n: number;
  without: number;
  with: number;
}

/** A producer kernel and then the write, per layer, with and without PDL on the write. */
export function measurePdl(stream: Stream, ref: ReturnType<typeof openBenchLibrary>, ns: readonly number[], onProgress: (n: number) => void): PdlRow[] {
  const maxN = Math.max(...ns);
  // The bf16 512+64 write is a copy of 1024 + 128 bytes a row; the scratch set times it as bytes.
  const scratch = allocScratch(copyLayout(1024, 128, 8));
  const inputs = Array.from({ length: LAYERS }, () => allocTensor("bf16", [maxN, 576]));
  try {
    const rows: PdlRow[] = [];
    for (const n of ns) {
      const time = timer(stream, n, 4 * SOURCE_ROW_BYTES);
      const produce = (l: number) => {
        const v = scratch.views(l, n);
        ref.producer(stream.handle, inputs[l]!.ptr, v.kNope.ptr, v.kRope!.ptr, n);
      };
      const write = (l: number, pdl: boolean) => {
        const v = scratch.views(l, n);
        setMlaKvBuffer(v.cache, v.loc, v.kNope, v.kRope, { stream, pdl });
      };
      write(0, false);
      stream.synchronize();
      const best = sideBySide({
        producer: time(produce),
        producerThenWrite: time((l) => (produce(l), write(l, false))),
        producerThenWritePdl: time((l) => (produce(l), write(l, true))),
      });
      rows.push({ n, ...best });
      onProgress(n);
    }
    return rows;
  } finally {
    scratch.free();
    for (const t of inputs) t.free();
  }
}

/** The bf16 write with and without a reserved slot (one that loc may contain, as in an engine). */
export function measureReservedSlot(stream: Stream, ns: readonly number[], onProgress: (n: number) => void): ReservedSlotRow[] {
  const scratch = allocScratch(copyLayout(1024, 128, 8));
  try {
    const rows: ReservedSlotRow[] = [];
    for (const n of ns) {
      const time = timer(stream, n, 2 * SOURCE_ROW_BYTES);
      const write = (reservedSlot: number | null) => (l: number) => {
        const v = scratch.views(l, n);
        setMlaKvBuffer(v.cache, v.loc, v.kNope, v.kRope, { stream, reservedSlot, pdl: false });
      };
      write(null)(0);
      stream.synchronize();
      // Six rounds: the two differ by one compare, so the noise is what there is to beat.
      const best = sideBySide({ without: time(write(null)), with: time(write(0)) }, 6);
      rows.push({ n, ...best });
      onProgress(n);
    }
    return rows;
  } finally {
    scratch.free();
  }
}
