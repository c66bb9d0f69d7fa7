/**
 * The benchmark's comparisons beyond the plain write, each timed like the rest of `bun run bench`
 * (8 layers per CUDA graph, replayed, CUDA events, variants re-timed side by side, best kept):
 *
 * - quantize-on-write: the fused fp8 writes (flat e4m3 576 B, DeepSeek sparse 656 B) against the
 *   unfused sequence an engine runs without them (quantize into a contiguous buffer, then scatter
 *   its bytes, both in the same graph) and against the plain bf16 write.
 * - the reserved slot: the same write with and without `reservedSlot`.
 * - programmatic dependent launch: a producer kernel followed by the write, with and without PDL.
 */
import { allocTensor, fromHost, setMlaKvBuffer, type DeviceTensor, type SetMlaKvBufferOptions, type Stream } from "../mod.ts";
import { allocScratch, widen } from "../autotune/scratch.ts";
import { timeGraphPerCall } from "../autotune/graph_timer.ts";
import type { openBenchLibrary } from "./bench_library.ts";

const LAYERS = 8;
const ROUNDS = 3;
/** Bytes of one bf16 source row (512 + 64 elements). */
const SOURCE_ROW_BYTES = 1152;
/** The flat fp8 format's per-tensor scale in these runs; any finite value times the same. */
const FLAT_SCALE = 0.5;

export interface Fp8Row {
  n: number;
  /** The plain bf16 write of the same rows (1152-byte cache rows). */
  bf16: number;
  flatFused: number;
  flatUnfused: number;
  dsMlaFused: number;
  dsMlaUnfused: number;
}

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

/** Times each variant `ROUNDS` times, interleaved, and keeps each one's best. */
function sideBySide<K extends string>(variants: Record<K, () => number>): Record<K, number> {
  const best = Object.fromEntries(Object.keys(variants).map((k) => [k, Infinity])) as Record<K, number>;
  for (let round = 0; round < ROUNDS; ++round) {
    for (const k of Object.keys(variants) as K[]) best[k] = Math.min(best[k], variants[k]());
  }
  return best;
}

/** A timer of `launch(layer)` at n rows (µs per layer), its replays sized from the bytes moved. */
function timer(stream: Stream, n: number, bytesPerRow: number) {
  return (launch: (layer: number) => void) => () =>
    timeGraphPerCall(stream, LAYERS, launch, { expectUs: 1 + (n * bytesPerRow) / 2.5e6 }).us;
}

/** loc = 0, 1, ..., n - 1: the unfused sequence's quantize step writes a contiguous buffer. */
function identityLoc(n: number): DeviceTensor {
  return fromHost(widen(Int32Array.from({ length: n }, (_, i) => i)), "i64", [n]);
}

/** Fused fp8 writes against the unfused sequences and the bf16 write. */
export function measureFp8(stream: Stream, ns: readonly number[], onProgress: (n: number) => void): Fp8Row[] {
  const maxN = Math.max(...ns);
  const owned: DeviceTensor[] = [];
  const own = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  const scratch = allocScratch({ dtype: "bf16", nopeElems: 512, ropeElems: 64, locBytes: 8 }, { layers: LAYERS, maxN });
  try {
    const capacity = scratch.capacity;
    const flatCaches = Array.from({ length: LAYERS }, () => own(allocTensor("fp8_e4m3", [capacity, 576])));
    const dsCaches = Array.from({ length: LAYERS }, () => own(allocTensor("u8", [capacity, 656])));
    const flatTemps = Array.from({ length: LAYERS }, () => own(allocTensor("fp8_e4m3", [maxN, 576])));
    const dsTemps = Array.from({ length: LAYERS }, () => own(allocTensor("u8", [maxN, 656])));
    const identity = own(identityLoc(maxN));
    const rows: Fp8Row[] = [];
    for (const n of ns) {
      const time = timer(stream, n, 2 * SOURCE_ROW_BYTES);
      const at = (layer: number) => scratch.views(layer, n);
      const opts = (extra: SetMlaKvBufferOptions = {}): SetMlaKvBufferOptions => ({ stream, ...extra });
      const write = {
        bf16: (l: number) => {
          const v = at(l);
          setMlaKvBuffer(v.cache, v.loc, v.kNope, v.kRope, opts());
        },
        flatFused: (l: number) => {
          const v = at(l);
          setMlaKvBuffer(flatCaches[l]!, v.loc, v.kNope, v.kRope, opts({ scale: FLAT_SCALE }));
        },
        flatUnfused: (l: number) => {
          const v = at(l);
          const temp = flatTemps[l]!.narrow(0, 0, n);
          setMlaKvBuffer(temp, identity.narrow(0, 0, n), v.kNope, v.kRope, opts({ scale: FLAT_SCALE }));
          setMlaKvBuffer(flatCaches[l]!, v.loc, temp.narrow(1, 0, 512), temp.narrow(1, 512, 64), opts());
        },
        dsMlaFused: (l: number) => {
          const v = at(l);
          setMlaKvBuffer(dsCaches[l]!, v.loc, v.kNope, v.kRope, opts({ format: "fp8_ds_mla" }));
        },
        dsMlaUnfused: (l: number) => {
          const v = at(l);
          const temp = dsTemps[l]!.narrow(0, 0, n);
          setMlaKvBuffer(temp, identity.narrow(0, 0, n), v.kNope, v.kRope, opts({ format: "fp8_ds_mla" }));
          setMlaKvBuffer(dsCaches[l]!, v.loc, temp.narrow(1, 0, 528), temp.narrow(1, 528, 128), opts());
        },
      };
      // One eager call of each first, as an engine makes before capturing: a capture never
      // tunes, so a layout without a stored profile is tuned here, outside the timing.
      for (const w of Object.values(write)) w(0);
      stream.synchronize();
      const best = sideBySide({
        bf16: time(write.bf16),
        flatFused: time(write.flatFused),
        flatUnfused: time(write.flatUnfused),
        dsMlaFused: time(write.dsMlaFused),
        dsMlaUnfused: time(write.dsMlaUnfused),
      });
      rows.push({ n, ...best });
      onProgress(n);
    }
    return rows;
  } finally {
    scratch.free();
    for (const t of owned) t.free();
  }
}

/** A producer kernel and then the write, per layer, with and without PDL on the write. */
export function measurePdl(stream: Stream, ref: ReturnType<typeof openBenchLibrary>, ns: readonly number[], onProgress: (n: number) => void): PdlRow[] {
  const maxN = Math.max(...ns);
  const scratch = allocScratch({ dtype: "bf16", nopeElems: 512, ropeElems: 64, locBytes: 8 }, { layers: LAYERS, maxN });
  const inputs = Array.from({ length: LAYERS }, () => allocTensor("bf16", [maxN, 576]));
  try {
    const rows: PdlRow[] = [];
    for (const n of ns) {
      const time = timer(stream, n, 4 * SOURCE_ROW_BYTES);
      const produce = (l: number) => ref.producer(stream.handle, inputs[l]!.ptr, scratch.nope[l]!.ptr, scratch.rope[l]!.ptr, n);
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
  const maxN = Math.max(...ns);
  const scratch = allocScratch({ dtype: "bf16", nopeElems: 512, ropeElems: 64, locBytes: 8 }, { layers: LAYERS, maxN });
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
      const best = sideBySide({ without: time(write(null)), with: time(write(0)) });
      const again = sideBySide({ without: time(write(null)), with: time(write(0)) });
      rows.push({ n, without: Math.min(best.without, again.without), with: Math.min(best.with, again.with) });
      onProgress(n);
    }
    return rows;
  } finally {
    scratch.free();
  }
}
