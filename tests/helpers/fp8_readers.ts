/**
 * How the attention kernels that read these caches turn our bytes back into numbers, so tests can
 * bound the error each reader sees. A reader multiplies each e4m3 element by its tile's scale, but
 * not every reader uses the fp32 scale we store:
 *
 * - `fp32`: the stored scale as it is (the indexer's readers, and any fp32 dequantization);
 * - `bf16`: the scale rounded to bf16, nearest even (FlashMLA's SM90 sparse decode for the V3.2
 *   layout, which multiplies in bf16);
 * - `e8m0`: the scale converted to an e8m0 power of two rounding toward zero, i.e. its fp32
 *   exponent field kept and its mantissa dropped (FlashMLA's SM100 sparse decode).
 *
 * A power-of-two scale reads back exactly under all three; amax / 448 does not under e8m0.
 */
import {
  bf16BitsToF32,
  DS_MLA_FP8,
  DS_V4_FP8,
  f32ToBf16Bits,
  fp8BitsToF32,
  INDEXER_FP8,
} from "./fp8_reference.ts";

export type ScaleReader = "fp32" | "bf16" | "e8m0";

const f32Cell = new Float32Array(1);
const u32Cell = new Uint32Array(f32Cell.buffer);

/** An e8m0 byte's value: 2^(byte - 127); 0xFF is NaN. */
export function e8m0ToF32(byte: number): number {
  return byte === 0xff ? NaN : 2 ** (byte - 127);
}

/** The e8m0 byte of a non-negative fp32 scale, rounding toward zero: its exponent field. */
export function e8m0TowardZero(scale: number): number {
  f32Cell[0] = scale;
  return (u32Cell[0]! >>> 23) & 0xff;
}

/** The scale a reader multiplies by, from the fp32 scale stored. */
export function readScale(scale: number, reader: ScaleReader): number {
  switch (reader) {
    case "fp32": return scale;
    case "bf16": return bf16BitsToF32(f32ToBf16Bits(scale, 0));
    case "e8m0": return e8m0ToF32(e8m0TowardZero(scale));
  }
}

/** A DeepSeek V3.2 row (656 bytes) as the reader sees it: nope = e4m3 x scale, rope = bf16. */
export function decodeDsMlaRow(row: Uint8Array, reader: ScaleReader): { nope: Float64Array; rope: Float64Array } {
  const view = new DataView(row.buffer, row.byteOffset, row.byteLength);
  const nope = new Float64Array(DS_MLA_FP8.nopeDim);
  for (let t = 0; t < DS_MLA_FP8.tiles; t++) {
    const scale = readScale(view.getFloat32(DS_MLA_FP8.scalesOffset + 4 * t, true), reader);
    for (let i = t * DS_MLA_FP8.tileSize; i < (t + 1) * DS_MLA_FP8.tileSize; i++) nope[i] = fp8BitsToF32(row[i]!, "e4m3") * scale;
  }
  const rope = Float64Array.from({ length: DS_MLA_FP8.ropeDim }, (_, j) => bf16BitsToF32(view.getUint16(DS_MLA_FP8.ropeOffset + 2 * j, true)));
  return { nope, rope };
}

/** Token `token` of the DeepSeek V4 page starting at byte `page` of `cache`. */
export function decodeDsV4Token(cache: Uint8Array, page: number, pageSize: number, token: number): { nope: Float64Array; rope: Float64Array } {
  const view = new DataView(cache.buffer, cache.byteOffset, cache.byteLength);
  const row = page + token * DS_V4_FP8.tokenBytes;
  const word = page + pageSize * DS_V4_FP8.tokenBytes + token * DS_V4_FP8.scaleWordBytes;
  const nope = Float64Array.from({ length: DS_V4_FP8.nopeDim }, (_, i) =>
    fp8BitsToF32(cache[row + i]!, "e4m3") * e8m0ToF32(cache[word + Math.floor(i / DS_V4_FP8.tileSize)]!),
  );
  const rope = Float64Array.from({ length: DS_V4_FP8.ropeDim }, (_, j) => bf16BitsToF32(view.getUint16(row + DS_V4_FP8.nopeDim + 2 * j, true)));
  return { nope, rope };
}

/** Token `token` of the indexer page starting at byte `page` of `cache`. */
export function decodeIndexerToken(cache: Uint8Array, page: number, pageSize: number, token: number, reader: ScaleReader = "fp32"): Float64Array {
  const view = new DataView(cache.buffer, cache.byteOffset, cache.byteLength);
  const scale = readScale(view.getFloat32(page + pageSize * INDEXER_FP8.dim + token * INDEXER_FP8.scaleBytes, true), reader);
  return Float64Array.from({ length: INDEXER_FP8.dim }, (_, i) => fp8BitsToF32(cache[page + token * INDEXER_FP8.dim + i]!, "e4m3") * scale);
}

/**
 * The largest |decoded - x| a reader may see for a finite source x stored as e4m3 under the stored
 * scale and read back with the scale `read`: the fp32 quotient q = x / stored is within 2^-24 |q|
 * of the exact one, its e4m3 rounding within half a step (2^-4 |q| for normals, 2^-10 in the
 * subnormal range), and a read scale that differs from the stored one moves the result by
 * |q| x |read - stored|. Saturation (|q| > 448) is not covered.
 */
export function decodeErrorBound(x: number, stored: number, read: number): number {
  if (stored === 0) return 0; // ds_mla's amax rule stores 0 for a tile whose finite elements are all zeros
  const q = Math.abs(x) / stored;
  return (Math.max(q * 2 ** -4, 2 ** -10) + q * 2 ** -23) * read + q * Math.abs(read - stored);
}
