/**
 * A plain host model of fp8 quantize-on-write. GPU tests compare the kernel's output with these
 * bytes one for one, so every rule here is written out step by step rather than borrowed from a
 * library whose rounding or NaN handling might differ from the kernel's documented behaviour.
 *
 * Inputs are raw 16-bit patterns (bf16 or fp16), outputs raw bytes. Values in between are JS
 * numbers that are always exactly representable in f32, because the kernel computes in f32.
 */

export type SourceFormat = "bf16" | "fp16";
export type Fp8Format = "e4m3" | "e5m2";
/** How a tile's scale follows from its amax (see {@link tileScale}). */
export type ScaleRule = "pow2" | "amax" | "ue8m0";
/** The tile-scaled formats, by the names the API gives them. */
export type TileFormat = "fp8_ds_mla" | "fp8_ds_v4" | "fp8_indexer";

/** Largest finite magnitude of each fp8 format; anything at or beyond it saturates to it. */
export const FP8_MAX: Readonly<Record<Fp8Format, number>> = { e4m3: 448, e5m2: 57344 };

/** The positive code of FP8_MAX: e4m3 (OCP E4M3FN) spends 0x7F on NaN, e5m2 spends 0x7C.. on inf/NaN. */
export const FP8_MAX_CODE: Readonly<Record<Fp8Format, number>> = { e4m3: 0x7e, e5m2: 0x7b };

/** Layout of the DeepSeek sparse-MLA fp8 row: e4m3 nope, one fp32 scale per tile, bf16 rope. */
export const DS_MLA_FP8 = {
  nopeDim: 512,
  ropeDim: 64,
  tileSize: 128,
  tiles: 4,
  scalesOffset: 512,
  ropeOffset: 528,
  rowBytes: 656,
} as const;

/**
 * DeepSeek V4's paged fp8 layout: a page of P tokens holds P token rows [448 e4m3 | 64 bf16]
 * (576 bytes each), then P scale words [7 e8m0, one per 64-element tile | 1 pad byte], the page
 * padded to a multiple of 576 bytes.
 */
export const DS_V4_FP8 = {
  nopeDim: 448,
  ropeDim: 64,
  tileSize: 64,
  tiles: 7,
  tokenBytes: 576,
  scaleWordBytes: 8,
} as const;

/** The indexer's paged K cache: a page of P tokens holds P x 128 e4m3, then P fp32 scales. */
export const INDEXER_FP8 = { dim: 128, scaleBytes: 4 } as const;

/** Bytes of one DeepSeek V4 page: P x 584 rounded up to a multiple of 576. */
export function dsV4PageBytes(pageSize: number): number {
  const used = pageSize * (DS_V4_FP8.tokenBytes + DS_V4_FP8.scaleWordBytes);
  return Math.ceil(used / DS_V4_FP8.tokenBytes) * DS_V4_FP8.tokenBytes;
}

/** Bytes of one indexer page: P x 132. */
export function indexerPageBytes(pageSize: number): number {
  return pageSize * (INDEXER_FP8.dim + INDEXER_FP8.scaleBytes);
}

/** The rule each tile-scaled format applies when none is asked for. */
export const DEFAULT_SCALE_RULE: Readonly<Record<TileFormat, ScaleRule>> = {
  fp8_ds_mla: "pow2",
  fp8_ds_v4: "pow2",
  fp8_indexer: "amax",
};

/** The rules each tile-scaled format accepts. */
export const SCALE_RULES: Readonly<Record<TileFormat, readonly ScaleRule[]>> = {
  fp8_ds_mla: ["pow2", "amax"],
  fp8_ds_v4: ["pow2"],
  fp8_indexer: ["amax", "ue8m0"],
};

// Shared scratch cells, so the conversions below allocate nothing per call.
const f32Cell = new Float32Array(1);
const u32Cell = new Uint32Array(f32Cell.buffer);

const f64Cell = new DataView(new ArrayBuffer(8));

/** 2^n for a normal double exponent, built from the exponent field so it is exact by construction. */
function pow2(n: number): number {
  if (!Number.isInteger(n) || n < -1022 || n > 1023) throw new RangeError(`pow2: exponent ${n} out of range`);
  f64Cell.setUint32(0, (n + 1023) << 20);
  f64Cell.setUint32(4, 0);
  return f64Cell.getFloat64(0);
}

/** bf16 is the top half of an f32, so decoding is a shift. */
export function bf16BitsToF32(bits: number): number {
  u32Cell[0] = (bits & 0xffff) << 16;
  return f32Cell[0]!;
}

const FP16_SUBNORMAL_UNIT = pow2(-24);

/** IEEE binary16: bias 15, 10 mantissa bits; every fp16 value is exact in f32. */
export function fp16BitsToF32(bits: number): number {
  const negative = (bits & 0x8000) !== 0;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  let magnitude: number;
  if (exponent === 0x1f) {
    if (mantissa !== 0) return NaN;
    magnitude = Infinity;
  } else if (exponent === 0) {
    magnitude = mantissa * FP16_SUBNORMAL_UNIT;
  } else {
    magnitude = (0x400 + mantissa) * pow2(exponent - 25);
  }
  return negative ? -magnitude : magnitude;
}

/**
 * Round an f32 value to bf16, ties to even. Adding 0x7FFF plus the kept part's lowest bit to the
 * f32 pattern and truncating is exact round-half-to-even for every finite value, subnormals
 * included, and carries into the exponent (up to inf) when the mantissa overflows. NaN is handled
 * first because a JS NaN has no observable sign, so the source's sign bit is passed in.
 */
export function f32ToBf16Bits(x: number, sourceSign: number): number {
  if (Number.isNaN(x)) return 0x7fc0 | ((sourceSign & 1) << 15);
  f32Cell[0] = x;
  const bits = u32Cell[0]!;
  if (!Number.isFinite(x)) return bits >>> 16;
  // Plain number arithmetic: the sum stays below 2^32 for every non-NaN pattern, so no wrap.
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return Math.floor(rounded / 0x10000) & 0xffff;
}

/** Decode an fp8 byte. The sign applies to zero too, so 0x80 gives -0. */
export function fp8BitsToF32(code: number, format: Fp8Format): number {
  const negative = (code & 0x80) !== 0;
  let magnitude: number;
  if (format === "e4m3") {
    // OCP E4M3FN: bias 7, 3 mantissa bits, no infinities; only S.1111.111 is NaN.
    const exponent = (code >> 3) & 0xf;
    const mantissa = code & 0x7;
    if (exponent === 0xf && mantissa === 0x7) return NaN;
    magnitude = exponent === 0 ? mantissa * pow2(-9) : (8 + mantissa) * pow2(exponent - 10);
  } else {
    // e5m2: bias 15, 2 mantissa bits, IEEE-like: exponent 31 is inf (mantissa 0) or NaN.
    const exponent = (code >> 2) & 0x1f;
    const mantissa = code & 0x3;
    if (exponent === 0x1f) {
      if (mantissa !== 0) return NaN;
      magnitude = Infinity;
    } else {
      magnitude = exponent === 0 ? mantissa * pow2(-16) : (4 + mantissa) * pow2(exponent - 17);
    }
  }
  return negative ? -magnitude : magnitude;
}

/**
 * The finite non-negative values of a format, indexed by code. Positive codes grow with value, so
 * the table is sorted and a code's index is the code itself.
 */
function finiteValues(format: Fp8Format): Float64Array {
  const values = new Float64Array(FP8_MAX_CODE[format] + 1);
  for (let code = 0; code < values.length; code++) values[code] = fp8BitsToF32(code, format);
  return values;
}

const FINITE_VALUES: Readonly<Record<Fp8Format, Float64Array>> = {
  e4m3: finiteValues("e4m3"),
  e5m2: finiteValues("e5m2"),
};

/** Index of the first table entry >= magnitude; the caller guarantees one exists. */
function lowerBound(values: Float64Array, magnitude: number): number {
  let lo = 0;
  let hi = values.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid]! < magnitude) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Encode an already scaled value the way the kernel documents it: NaN stays NaN (0x7F with the
 * sign), inf and anything at or beyond the largest finite magnitude saturate to it, and the rest
 * rounds to the nearest finite value with ties to the even code. Codes of adjacent values differ by
 * one and the code's lowest bit is the mantissa's lowest bit, so "even code" is round-half-to-even.
 * The sign comes from `negative` so that -0 and negative values that round to zero keep it.
 */
export function encodeFp8(q: number, negative: boolean, isNaN: boolean, format: Fp8Format): number {
  const sign = negative ? 0x80 : 0;
  if (isNaN || Number.isNaN(q)) return 0x7f | sign;
  const magnitude = Math.abs(q);
  if (magnitude >= FP8_MAX[format]) return FP8_MAX_CODE[format] | sign;
  const values = FINITE_VALUES[format];
  const upper = lowerBound(values, magnitude);
  if (values[upper] === magnitude || upper === 0) return upper | sign;
  const lower = upper - 1;
  // fp8 values carry a few significant bits, so their midpoint is exact in a double.
  const midpoint = (values[lower]! + values[upper]!) / 2;
  if (magnitude < midpoint) return lower | sign;
  if (magnitude > midpoint) return upper | sign;
  return ((lower & 1) === 0 ? lower : upper) | sign;
}

/** IEEE f32 division: the double quotient of two f32 values, rounded once to f32, is exactly it. */
export function f32Div(a: number, b: number): number {
  return Math.fround(a / b);
}

function decode16(bits: number, source: SourceFormat): number {
  return source === "bf16" ? bf16BitsToF32(bits) : fp16BitsToF32(bits);
}

/** Sign from the pattern rather than the value, because a decoded NaN has lost it. */
function signBit(bits: number): boolean {
  return (bits & 0x8000) !== 0;
}

/** A scale the kernel could receive: a positive finite f32, otherwise the comparison is meaningless. */
function checkScale(scale: number): void {
  if (!(scale > 0) || !Number.isFinite(scale) || Math.fround(scale) !== scale) {
    throw new RangeError(`scale must be a positive finite f32 value, got ${scale}`);
  }
}

/** fp32's 1e-4, the floor of the power-of-two rules and of the indexer's amax rule. */
export const SCALE_FLOOR = Math.fround(1e-4);

/**
 * The smallest power of two >= v, for a positive finite v: found by stepping an exact power of
 * two up or down from an estimate until it is the first one not below v.
 */
export function ceilPow2(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`ceilPow2: ${v} is not positive and finite`);
  let k = Math.round(Math.log2(v));
  while (pow2(k) < v) k++;
  while (pow2(k - 1) >= v) k--;
  return pow2(k);
}

/**
 * The fp32 scale of a tile whose largest finite |x| is `amax`, as the README states each rule:
 * - ds_mla and ds_v4, `pow2`: 2^ceil(log2(max(amax / 448, 1e-4))), amax / 448 in fp32;
 * - ds_mla, `amax`: amax / 448 (0 for an all-zero tile);
 * - indexer, `amax`: max(amax, 1e-4) / 448;
 * - indexer, `ue8m0`: that, rounded up to a power of two.
 */
export function tileScale(format: TileFormat, rule: ScaleRule, amax: number): number {
  if (!SCALE_RULES[format].includes(rule)) throw new RangeError(`${format} has no ${rule} scale rule`);
  if (format === "fp8_indexer") {
    const scale = f32Div(Math.max(amax, SCALE_FLOOR), FP8_MAX.e4m3);
    return rule === "ue8m0" ? ceilPow2(scale) : scale;
  }
  const quotient = f32Div(amax, FP8_MAX.e4m3);
  return rule === "pow2" ? ceilPow2(Math.max(quotient, SCALE_FLOOR)) : quotient;
}

/**
 * One source element stored as e4m3 under a tile scale: x / scale (an fp32 division), or x itself
 * where the scale is 0 (ds_mla's all-zero tile under the amax rule).
 */
function quantizeTileElement(bits: number, source: SourceFormat, scale: number): number {
  const x = decode16(bits, source);
  const q = scale === 0 ? x : f32Div(x, scale);
  return encodeFp8(q, signBit(bits), Number.isNaN(x), "e4m3");
}

/** The flat fp8 row: nope then rope, each element divided by one shared scale and encoded. */
export function quantizeFlatRow(
  nope: Uint16Array,
  rope: Uint16Array,
  source: SourceFormat,
  format: Fp8Format,
  scale: number,
): Uint8Array {
  checkScale(scale);
  const out = new Uint8Array(nope.length + rope.length);
  let k = 0;
  for (const part of [nope, rope]) {
    for (const bits of part) {
      const x = decode16(bits, source);
      out[k++] = encodeFp8(f32Div(x, scale), signBit(bits), Number.isNaN(x), format);
    }
  }
  return out;
}

/** Largest finite magnitude in nope[start, end); NaN and inf would make the scale useless. */
function finiteAmax(nope: Uint16Array, start: number, end: number, source: SourceFormat): number {
  let amax = 0;
  for (let i = start; i < end; i++) {
    const x = decode16(nope[i]!, source);
    if (Number.isFinite(x)) amax = Math.max(amax, Math.abs(x));
  }
  return amax;
}

/** The rope part stays 16-bit: bf16 passes through untouched, fp16 is rounded to bf16. */
function ropeToBf16(bits: number, source: SourceFormat): number {
  return source === "bf16" ? bits & 0xffff : f32ToBf16Bits(fp16BitsToF32(bits), (bits >> 15) & 1);
}

function checkLength(part: string, got: Uint16Array, want: number): void {
  if (got.length !== want) throw new RangeError(`${part} must have ${want} elements, got ${got.length}`);
}

/** Each tile of `nope` quantized by its own scale into out[start..], the scales returned. */
function quantizeTiles(nope: Uint16Array, source: SourceFormat, format: TileFormat, rule: ScaleRule, tileSize: number, out: Uint8Array): number[] {
  const scales: number[] = [];
  for (let start = 0; start < nope.length; start += tileSize) {
    const end = start + tileSize;
    const scale = tileScale(format, rule, finiteAmax(nope, start, end, source));
    for (let i = start; i < end; i++) out[i] = quantizeTileElement(nope[i]!, source, scale);
    scales.push(scale);
  }
  return scales;
}

/**
 * The 656-byte DeepSeek sparse-MLA row: 512 e4m3 nope bytes, four little-endian fp32 tile scales,
 * then 64 little-endian bf16 rope values. Rule `pow2` (the default) scales each 128-element tile
 * by a power of two, the smallest not below its finite amax / 448 (at least 2^-13); rule `amax` by
 * amax / 448 itself, so its largest finite value lands on the top e4m3 code, and a tile with
 * nothing finite and non-zero gets scale 0 and is encoded unscaled (zeros stay zeros, inf
 * saturates, NaN stays NaN).
 */
export function quantizeDsMlaRow(nope: Uint16Array, rope: Uint16Array, source: SourceFormat, rule: ScaleRule = "pow2"): Uint8Array {
  const { nopeDim, ropeDim, tileSize, scalesOffset, ropeOffset, rowBytes } = DS_MLA_FP8;
  checkLength("nope", nope, nopeDim);
  checkLength("rope", rope, ropeDim);
  const out = new Uint8Array(rowBytes);
  const view = new DataView(out.buffer);
  quantizeTiles(nope, source, "fp8_ds_mla", rule, tileSize, out).forEach((scale, t) => view.setFloat32(scalesOffset + 4 * t, scale, true));
  for (let j = 0; j < ropeDim; j++) view.setUint16(ropeOffset + 2 * j, ropeToBf16(rope[j]!, source), true);
  return out;
}

/** A DeepSeek V4 token: its 576-byte row and the 7 e8m0 bytes of its scale word (pad not included). */
export interface DsV4Token {
  row: Uint8Array;
  scales: Uint8Array;
}

/** The e8m0 byte of a power of two 2^k: k + 127. */
export function e8m0OfPow2(scale: number): number {
  const k = Math.log2(scale);
  if (!Number.isInteger(k) || k < -127 || k > 127) throw new RangeError(`${scale} is not a power of two e8m0 holds`);
  return k + 127;
}

/**
 * A DeepSeek V4 token: 448 e4m3 nope bytes (seven 64-element tiles, each by its pow2 scale), 64
 * little-endian bf16 rope values, and each tile's scale as its e8m0 exponent byte.
 */
export function quantizeDsV4Token(nope: Uint16Array, rope: Uint16Array, source: SourceFormat): DsV4Token {
  const { nopeDim, ropeDim, tileSize, tokenBytes } = DS_V4_FP8;
  checkLength("nope", nope, nopeDim);
  checkLength("rope", rope, ropeDim);
  const row = new Uint8Array(tokenBytes);
  const scales = Uint8Array.from(quantizeTiles(nope, source, "fp8_ds_v4", "pow2", tileSize, row), e8m0OfPow2);
  const view = new DataView(row.buffer);
  for (let j = 0; j < ropeDim; j++) view.setUint16(nopeDim + 2 * j, ropeToBf16(rope[j]!, source), true);
  return { row, scales };
}

/** An indexer token: 128 e4m3 values and the fp32 scale they share. */
export interface IndexerToken {
  values: Uint8Array;
  scale: number;
}

/** An indexer token: one 128-element tile scaled by rule `amax` (the default) or `ue8m0`. */
export function quantizeIndexerToken(k: Uint16Array, source: SourceFormat, rule: ScaleRule = "amax"): IndexerToken {
  checkLength("k", k, INDEXER_FP8.dim);
  const values = new Uint8Array(INDEXER_FP8.dim);
  const [scale] = quantizeTiles(k, source, "fp8_indexer", rule, INDEXER_FP8.dim, values);
  return { values, scale: scale! };
}
