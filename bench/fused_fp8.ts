/**
 * `bun run bench --part fp8`: each quantizing format fused (converted in the write) against the
 * unfused sequence an engine runs without it, and against the bf16 write of the same rows, timed
 * as the rest of the benchmark (bench/timing.ts). Every write goes straight through the C ABI
 * (MLA_KV_PATH_AUTO: the library's built-in launch rule for all three), so the comparison does
 * not depend on the TypeScript layer or a tuned profile.
 *
 * The unfused sequences, all in the same graph as one layer's work, with this library's own
 * kernels so the difference is the extra pass and launches, not a weaker cast:
 * - row formats (flat e4m3, ds_mla): quantize into a contiguous [n, row] buffer (loc 0..n-1), then
 *   scatter those rows' bytes into their slots;
 * - paged formats (ds_v4, indexer): quantize into one contiguous page of n tokens (its token rows,
 *   then its scales), then two scatters: the token rows into their pages, and the scales into the
 *   pages' scale area. Both scatters see the cache as a grid of equal rows (576 or 128 bytes for
 *   token rows, 8 or 4 for scales), which works because a page's size is a multiple of both; the
 *   grid's row indices are computed on the host before timing, so the unfused side is not charged
 *   for the index arithmetic an engine's scatter kernel would do. A ds_v4 scale word is copied
 *   whole (8 bytes, pad included), as a plain scatter would.
 */
import { allocTensor, fromHost, type DeviceTensor, type Stream } from "../mod.ts";
import { check, native } from "../ffi/native.ts";
import {
  MLA_KV_FLAG_PDL,
  MLA_KV_FORMAT_CODES,
  MLA_KV_PATH_AUTO,
  MLA_KV_SCALE_DEFAULT,
  MLA_KV_SCALE_RULE_CODES,
  MLA_KV_SOURCE_BF16,
} from "../ffi/abi.ts";
import { randomSlots, widen } from "../autotune/scratch.ts";
import { DS_V4_FP8, INDEXER_FP8, type ScaleRule } from "../tests/helpers/fp8_reference.ts";
import { formatRowBytes, isPaged, type QuantizedFormat } from "../tests/helpers/fp8_cache_reference.ts";
import { LAYERS, sideBySide, timer } from "./timing.ts";

/** The flat fp8 format's per-tensor scale in these runs; any finite value times the same. */
const FLAT_SCALE = 0.5;
/** Tokens a page of the paged formats (vLLM's and sglang's usual block size for them). */
const PAGE_SIZE = 64;
/** Slots of each layer's cache: 8 layers of them dwarf any L2. */
const CAPACITY = 128 * 1024;

interface Fp8Case {
  format: QuantizedFormat;
  rule?: ScaleRule;
  nopeElems: number;
  ropeElems: number;
}

const CASES: readonly Fp8Case[] = [
  { format: "fp8_e4m3", nopeElems: 512, ropeElems: 64 },
  { format: "fp8_ds_mla", rule: "pow2", nopeElems: 512, ropeElems: 64 },
  { format: "fp8_ds_mla", rule: "amax", nopeElems: 512, ropeElems: 64 },
  { format: "fp8_ds_v4", nopeElems: 448, ropeElems: 64 },
  { format: "fp8_indexer", rule: "amax", nopeElems: 128, ropeElems: 0 },
  { format: "fp8_indexer", rule: "ue8m0", nopeElems: 128, ropeElems: 0 },
];

export interface Fp8Row {
  /** The format and its scale rule, e.g. "fp8_ds_mla pow2". */
  format: string;
  n: number;
  /** The plain bf16 write of the same source rows (nope + rope, 2 bytes an element). */
  bf16: number;
  fused: number;
  unfused: number;
}

const labelOf = (c: Fp8Case) => (c.rule ? `${c.format} ${c.rule}` : c.format);

/**
 * How a paged format's pages split into a grid of equal token rows and a grid of equal scale
 * entries: the index of token t of page p is p * perPage + start + t in its grid.
 */
function pagedGrids(format: "fp8_ds_v4" | "fp8_indexer", pageSize: number) {
  const pageBytes = formatRowBytes(format, 0, 0, pageSize);
  const rowBytes = format === "fp8_ds_v4" ? DS_V4_FP8.tokenBytes : INDEXER_FP8.dim;
  const scaleBytes = format === "fp8_ds_v4" ? DS_V4_FP8.scaleWordBytes : INDEXER_FP8.scaleBytes;
  if (pageBytes % rowBytes !== 0 || pageBytes % scaleBytes !== 0) throw new Error(`page of ${pageSize} does not split into grids`);
  return {
    pageBytes,
    rows: { bytes: rowBytes, perPage: pageBytes / rowBytes, start: 0 },
    scales: { bytes: scaleBytes, perPage: pageBytes / scaleBytes, start: (pageSize * rowBytes) / scaleBytes },
  };
}

/** Slots as indices into a grid of `pageSize`-token pages: page * perPage + start + token. */
function gridLoc(slots: BigInt64Array, pageSize: number, grid: { perPage: number; start: number }): DeviceTensor {
  const rows = Int32Array.from(slots, (s) => Math.floor(Number(s) / pageSize) * grid.perPage + grid.start + (Number(s) % pageSize));
  return fromHost(widen(rows), "i64", [rows.length]);
}

/** The C ABI's copying write: `bytes` of each source row into cache row loc[i]. */
function copyRows(stream: Stream, cache: number, capacity: number, stride: number, loc: number, n: number, src: number, srcStride: number, bytes: number, ropeSrc = src, ropeStride = srcStride, ropeBytes = 0): void {
  check(
    native().mla_kv_set_kv_buffer(0, stream.handle, cache, capacity, stride, loc, 8, n, src, srcStride, bytes, ropeSrc, ropeStride, ropeBytes, -1, MLA_KV_PATH_AUTO, 0, 0, MLA_KV_FLAG_PDL),
    "mla_kv_set_kv_buffer",
  );
}

/** The C ABI's quantizing write of bf16 rows. */
function quantize(stream: Stream, c: Fp8Case, cache: number, capacity: number, stride: number, pageSize: number, loc: number, n: number, nope: number, nopeStride: number, rope: number, ropeStride: number): void {
  check(
    native().mla_kv_set_kv_buffer_quantized(
      0, stream.handle, MLA_KV_FORMAT_CODES[c.format], c.rule ? MLA_KV_SCALE_RULE_CODES[c.rule] : MLA_KV_SCALE_DEFAULT, cache, capacity, stride, pageSize,
      loc, 8, n, MLA_KV_SOURCE_BF16, nope, nopeStride, c.nopeElems, c.ropeElems ? rope : 0, ropeStride, c.ropeElems, FLAT_SCALE, -1,
      MLA_KV_PATH_AUTO, 0, 0, MLA_KV_FLAG_PDL,
    ),
    "mla_kv_set_kv_buffer_quantized",
  );
}

/** bf16 activations with magnitudes in [0.5, 8) and either sign, from random bit patterns: ordinary tile maxima. */
function bf16Activations(count: number, seed: number): Uint16Array {
  const out = new Uint16Array(count);
  let x = seed | 1;
  for (let k = 0; k < count; ++k) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[k] = 0x3f00 + ((x >>> 8) & 0x1ff) + ((x >>> 31) << 15);
  }
  return out;
}

/**
 * The buffers of one format, per layer: the sources (bf16, nope and rope as two tensors), random
 * unique slots, the bf16 cache of the same rows, the fused format's cache and the unfused
 * sequence's temporary; and the three writes at n rows of layer l, as launches.
 */
function launches(stream: Stream, c: Fp8Case, owned: DeviceTensor[], maxN: number) {
  const own = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  const capacity = CAPACITY;
  const pageSize = isPaged(c.format) ? PAGE_SIZE : 0;
  const stride = formatRowBytes(c.format, c.nopeElems, c.ropeElems, pageSize);
  const cacheRows = pageSize ? capacity / pageSize : capacity;
  const ropeWidth = Math.max(1, c.ropeElems);
  // One set of source values serves every layer (each layer still reads its own copy).
  const nopeValues = bf16Activations(maxN * c.nopeElems, 7);
  const ropeValues = bf16Activations(maxN * ropeWidth, 11);
  const slots = Array.from({ length: LAYERS }, (_, l) => widen(randomSlots(maxN, capacity, 7 + l * 7919)));
  const layers = Array.from({ length: LAYERS }, (_, l) => ({
    nope: own(fromHost(nopeValues, "bf16", [maxN, c.nopeElems])),
    rope: own(fromHost(ropeValues, "bf16", [maxN, ropeWidth])),
    loc: own(fromHost(slots[l]!, "i64", [maxN])),
    bf16Cache: own(allocTensor("bf16", [capacity, c.nopeElems + c.ropeElems])),
    cache: own(allocTensor("u8", [cacheRows, stride])),
    // Row formats: [maxN, row]; paged: one page of maxN tokens (a page of n tokens fits in it).
    temp: own(allocTensor("u8", [formatRowBytes(c.format, c.nopeElems, c.ropeElems, pageSize ? maxN : 0) * (pageSize ? 1 : maxN)])),
  }));
  const identity = own(fromHost(widen(Int32Array.from({ length: maxN }, (_, i) => i)), "i64", [maxN]));
  const nopeStride = 2 * c.nopeElems;
  const ropeStride = 2 * ropeWidth;
  const fused = (n: number) => (l: number) => {
    const b = layers[l]!;
    quantize(stream, c, b.cache.ptr, capacity, stride, pageSize, b.loc.ptr, n, b.nope.ptr, nopeStride, b.rope.ptr, ropeStride);
  };
  const bf16 = (n: number) => (l: number) => {
    const b = layers[l]!;
    copyRows(stream, b.bf16Cache.ptr, capacity, 2 * (c.nopeElems + c.ropeElems), b.loc.ptr, n, b.nope.ptr, nopeStride, 2 * c.nopeElems, b.rope.ptr, ropeStride, 2 * c.ropeElems);
  };
  if (!isPaged(c.format)) {
    const unfused = (n: number) => (l: number) => {
      const b = layers[l]!;
      quantize(stream, c, b.temp.ptr, maxN, stride, 0, identity.ptr, n, b.nope.ptr, nopeStride, b.rope.ptr, ropeStride);
      copyRows(stream, b.cache.ptr, capacity, stride, b.loc.ptr, n, b.temp.ptr, stride, stride);
    };
    return { bf16, fused, unfused };
  }
  const grids = pagedGrids(c.format, pageSize);
  const rowLoc = slots.map((s) => own(gridLoc(s, pageSize, grids.rows)));
  const scaleLoc = slots.map((s) => own(gridLoc(s, pageSize, grids.scales)));
  const unfused = (n: number) => (l: number) => {
    const b = layers[l]!;
    const temp = b.temp.ptr;
    quantize(stream, c, temp, n, formatRowBytes(c.format, c.nopeElems, c.ropeElems, n), n, identity.ptr, n, b.nope.ptr, nopeStride, b.rope.ptr, ropeStride);
    copyRows(stream, b.cache.ptr, cacheRows * grids.rows.perPage, grids.rows.bytes, rowLoc[l]!.ptr, n, temp, grids.rows.bytes, grids.rows.bytes);
    copyRows(stream, b.cache.ptr, cacheRows * grids.scales.perPage, grids.scales.bytes, scaleLoc[l]!.ptr, n, temp + n * grids.rows.bytes, grids.scales.bytes, grids.scales.bytes);
  };
  return { bf16, fused, unfused };
}

/** Every format fused against its unfused sequence and the bf16 write, at each n. */
export function measureFp8(stream: Stream, ns: readonly number[], onProgress: (what: string, n: number) => void): Fp8Row[] {
  const maxN = Math.max(...ns);
  const rows: Fp8Row[] = [];
  for (const c of CASES) {
    const owned: DeviceTensor[] = [];
    try {
      const write = launches(stream, c, owned, maxN);
      for (const n of ns) {
        const time = timer(stream, n, 4 * (c.nopeElems + c.ropeElems));
        // One eager call of each before the graphs, so nothing is first used inside a capture.
        for (const w of Object.values(write)) w(n)(0);
        stream.synchronize();
        const best = sideBySide({ bf16: time(write.bf16(n)), fused: time(write.fused(n)), unfused: time(write.unfused(n)) });
        rows.push({ format: labelOf(c), n, ...best });
        onProgress(labelOf(c), n);
      }
    } finally {
      for (const t of owned) t.free();
    }
  }
  return rows;
}
