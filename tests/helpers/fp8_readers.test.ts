import { describe, expect, test } from "bun:test";
import {
  bf16BitsToF32,
  DS_MLA_FP8,
  DS_V4_FP8,
  dsV4PageBytes,
  fp16BitsToF32,
  indexerPageBytes,
  quantizeDsMlaRow,
  quantizeDsV4Token,
  quantizeIndexerToken,
  type ScaleRule,
  type SourceFormat,
} from "./fp8_reference.ts";
import {
  decodeDsMlaRow,
  decodeDsV4Token,
  decodeErrorBound,
  decodeIndexerToken,
  e8m0ToF32,
  e8m0TowardZero,
  readScale,
  type ScaleReader,
} from "./fp8_readers.ts";
import { sourceRow } from "./fp8_sources.ts";
import { Rng } from "./gpu.ts";

const READERS: readonly ScaleReader[] = ["fp32", "bf16", "e8m0"];

function decode16(bits: number, source: SourceFormat): number {
  return source === "bf16" ? bf16BitsToF32(bits) : fp16BitsToF32(bits);
}

function scalesOf(row: Uint8Array): number[] {
  const view = new DataView(row.buffer, row.byteOffset, row.byteLength);
  return Array.from({ length: DS_MLA_FP8.tiles }, (_, t) => view.getFloat32(DS_MLA_FP8.scalesOffset + 4 * t, true));
}

/** How many elements differ (NaN equals NaN; -0 differs from 0). */
function differences(a: Float64Array, b: Float64Array): number {
  let count = 0;
  a.forEach((x, i) => {
    if (!Object.is(x, b[i]) && !(Number.isNaN(x) && Number.isNaN(b[i]!))) count++;
  });
  return count;
}

/** Activations around 1, the common case, so the scales are ordinary. */
function activationRow(rng: Rng, count: number, source: SourceFormat): Uint16Array {
  return sourceRow(rng, count, source, 1);
}

/** The largest |decoded - x| / |x| over the finite non-zero elements of a ds_mla row. */
function worstRelativeError(nope: Uint16Array, source: SourceFormat, rule: ScaleRule, reader: ScaleReader): number {
  const decoded = decodeDsMlaRow(quantizeDsMlaRow(nope, new Uint16Array(DS_MLA_FP8.ropeDim), source, rule), reader).nope;
  let worst = 0;
  nope.forEach((bits, i) => {
    const x = decode16(bits, source);
    if (Number.isFinite(x) && x !== 0) worst = Math.max(worst, Math.abs(decoded[i]! - x) / Math.abs(x));
  });
  return worst;
}

describe("e8m0 conversions", () => {
  test("toward zero keeps the fp32 exponent field and drops the mantissa", () => {
    expect(e8m0TowardZero(1)).toBe(127);
    expect(e8m0TowardZero(1.99)).toBe(127);
    expect(e8m0TowardZero(0.5)).toBe(126);
    expect(e8m0TowardZero(1 / 448)).toBe(127 - 9);
    expect(e8m0TowardZero(0)).toBe(0);
    expect(e8m0ToF32(127)).toBe(1);
    expect(e8m0ToF32(114)).toBe(2 ** -13);
    expect(e8m0ToF32(0xff)).toBeNaN();
  });

  test("readScale gives each reader's view of a scale", () => {
    expect(readScale(1 / 448, "fp32")).toBe(1 / 448);
    expect(readScale(Math.fround(1 / 448), "bf16")).toBe(bf16BitsToF32(0x3b12));
    expect(readScale(1 / 448, "e8m0")).toBe(2 ** -9);
  });
});

describe("decoding our bytes the way each reader does", () => {
  test("pow2 scales read back exactly under all three readers, so the decoded rows agree", () => {
    const rng = new Rng(1);
    for (const source of ["bf16", "fp16"] as const) {
      for (let trial = 0; trial < 40; trial++) {
        const nope = sourceRow(rng, DS_MLA_FP8.nopeDim, source);
        const row = quantizeDsMlaRow(nope, new Uint16Array(DS_MLA_FP8.ropeDim), source, "pow2");
        for (const scale of scalesOf(row)) for (const reader of READERS) expect(readScale(scale, reader)).toBe(scale);
        const [fp32, bf16, e8m0] = READERS.map((reader) => decodeDsMlaRow(row, reader).nope);
        expect(differences(bf16!, fp32!)).toBe(0);
        expect(differences(e8m0!, fp32!)).toBe(0);
      }
    }
  });

  test("the amax rule's scales do not read back exactly under e8m0: its errors pass 12.5 %, where fp32 and bf16 stay near e4m3's 6.25 %", () => {
    const rng = new Rng(2);
    const worst: Record<ScaleReader, number> = { fp32: 0, bf16: 0, e8m0: 0 };
    for (let trial = 0; trial < 40; trial++) {
      const nope = activationRow(rng, DS_MLA_FP8.nopeDim, "bf16");
      for (const reader of READERS) worst[reader] = Math.max(worst[reader], worstRelativeError(nope, "bf16", "amax", reader));
    }
    // e8m0 truncates a scale M x 2^e (1 <= M < 2) to 2^e, reading every element of the tile 1/M
    // times its size: up to half of it lost, depending on the tile's amax.
    expect(worst.e8m0).toBeGreaterThan(0.125);
    expect(worst.fp32).toBeLessThanOrEqual(2 ** -4 + 1e-6);
    expect(worst.bf16).toBeLessThanOrEqual(2 ** -4 + 2 ** -8);
    // With 1.0 the amax, the e8m0 reader sees 2^-9 for 1/448: every element comes back 12.5 % small.
    const ones = new Uint16Array(DS_MLA_FP8.nopeDim).fill(0x3f80);
    expect(worstRelativeError(ones, "bf16", "amax", "e8m0")).toBeCloseTo(0.125, 6);
    expect(worstRelativeError(ones, "bf16", "pow2", "e8m0")).toBe(0);
  });

  test("every finite element of every format decodes within the e4m3 bound of its source", () => {
    const rng = new Rng(3);
    const check = (x: number, decoded: number, stored: number, read: number) => {
      if (!Number.isFinite(x)) return;
      // The bound is computed in doubles; a hair of slack covers its own rounding.
      const error = Math.abs(decoded - x);
      if (error > decodeErrorBound(x, stored, read) * (1 + 2 ** -30)) throw new Error(`x ${x} decoded ${decoded} under scale ${stored} read as ${read}`);
    };
    for (const source of ["bf16", "fp16"] as const) {
      for (let trial = 0; trial < 30; trial++) {
        const nope = sourceRow(rng, DS_MLA_FP8.nopeDim, source);
        for (const rule of ["pow2", "amax"] as const) {
          const row = quantizeDsMlaRow(nope, new Uint16Array(DS_MLA_FP8.ropeDim), source, rule);
          const scales = scalesOf(row);
          for (const reader of READERS) {
            const decoded = decodeDsMlaRow(row, reader).nope;
            nope.forEach((bits, i) => {
              const stored = scales[Math.floor(i / DS_MLA_FP8.tileSize)]!;
              check(decode16(bits, source), decoded[i]!, stored, readScale(stored, reader));
            });
          }
        }
        const v4Nope = nope.subarray(0, DS_V4_FP8.nopeDim);
        const { row, scales } = quantizeDsV4Token(v4Nope, new Uint16Array(DS_V4_FP8.ropeDim), source);
        const page = new Uint8Array(dsV4PageBytes(1));
        page.set(row, 0);
        page.set(scales, DS_V4_FP8.tokenBytes);
        const v4 = decodeDsV4Token(page, 0, 1, 0).nope;
        v4Nope.forEach((bits, i) => {
          const stored = e8m0ToF32(scales[Math.floor(i / DS_V4_FP8.tileSize)]!);
          check(decode16(bits, source), v4[i]!, stored, stored);
        });
        for (const rule of ["amax", "ue8m0"] as const) {
          const k = nope.subarray(0, 128);
          const { values, scale } = quantizeIndexerToken(k, source, rule);
          const indexerPage = new Uint8Array(indexerPageBytes(1));
          indexerPage.set(values, 0);
          new DataView(indexerPage.buffer).setFloat32(128, scale, true);
          const decoded = decodeIndexerToken(indexerPage, 0, 1, 0);
          k.forEach((bits, i) => check(decode16(bits, source), decoded[i]!, scale, scale));
        }
      }
    }
  });
});
