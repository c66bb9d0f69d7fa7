import { describe, expect, test } from "bun:test";
import {
  bf16BitsToF32,
  ceilPow2,
  DEFAULT_SCALE_RULE,
  DS_MLA_FP8,
  DS_V4_FP8,
  e8m0OfPow2,
  encodeFp8,
  f32Div,
  f32ToBf16Bits,
  FP8_MAX,
  FP8_MAX_CODE,
  fp16BitsToF32,
  fp8BitsToF32,
  type Fp8Format,
  quantizeDsMlaRow,
  quantizeDsV4Token,
  quantizeFlatRow,
  quantizeIndexerToken,
  SCALE_FLOOR,
  tileScale,
} from "./fp8_reference.ts";

const FORMATS: readonly Fp8Format[] = ["e4m3", "e5m2"];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function f32FromBits(bits: number): number {
  u32[0] = bits;
  return f32[0]!;
}

function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** The next f32 away from zero (+1) or towards it (-1), for positive finite x. */
function f32Step(x: number, direction: 1 | -1): number {
  return f32FromBits(f32Bits(x) + direction);
}

/** Deterministic so a failure reproduces. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Encoding by scanning every finite code, independent of the reference's table search. */
function encodeByScan(q: number, negative: boolean, format: Fp8Format): number {
  const sign = negative ? 0x80 : 0;
  const magnitude = Math.abs(q);
  if (magnitude >= FP8_MAX[format]) return FP8_MAX_CODE[format] | sign;
  let best = 0;
  let bestDistance = Infinity;
  for (let code = 0; code <= FP8_MAX_CODE[format]; code++) {
    const distance = Math.abs(fp8BitsToF32(code, format) - magnitude);
    if (distance < bestDistance || (distance === bestDistance && (code & 1) === 0)) {
      best = code;
      bestDistance = distance;
    }
  }
  return best | sign;
}

function scaleAt(row: Uint8Array, tile: number): number {
  return new DataView(row.buffer, row.byteOffset).getFloat32(DS_MLA_FP8.scalesOffset + 4 * tile, true);
}

function scaleBytes(row: Uint8Array, tile: number): number[] {
  const start = DS_MLA_FP8.scalesOffset + 4 * tile;
  return [...row.subarray(start, start + 4)];
}

function ropeBitsAt(row: Uint8Array, j: number): number {
  return new DataView(row.buffer, row.byteOffset).getUint16(DS_MLA_FP8.ropeOffset + 2 * j, true);
}

function bf16(x: number): number {
  return f32ToBf16Bits(x, x < 0 || Object.is(x, -0) ? 1 : 0);
}

function emptyRow(): { nope: Uint16Array; rope: Uint16Array } {
  return { nope: new Uint16Array(DS_MLA_FP8.nopeDim), rope: new Uint16Array(DS_MLA_FP8.ropeDim) };
}

describe("bf16BitsToF32 and fp16BitsToF32", () => {
  test("decode one, the smallest subnormals and signed zeros exactly", () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0x4049)).toBe(3.140625);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133);
    expect(Object.is(bf16BitsToF32(0x8000), -0)).toBe(true);
    expect(Object.is(bf16BitsToF32(0x0000), 0)).toBe(true);
    expect(fp16BitsToF32(0x3c00)).toBe(1);
    expect(fp16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(fp16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(fp16BitsToF32(0x0400)).toBe(2 ** -14);
    expect(fp16BitsToF32(0x7bff)).toBe(65504);
    expect(fp16BitsToF32(0xc000)).toBe(-2);
    expect(Object.is(fp16BitsToF32(0x8000), -0)).toBe(true);
  });

  test("decode infinities and every NaN pattern", () => {
    expect(bf16BitsToF32(0x7f80)).toBe(Infinity);
    expect(bf16BitsToF32(0xff80)).toBe(-Infinity);
    expect(bf16BitsToF32(0x7fc0)).toBeNaN();
    expect(bf16BitsToF32(0x7f81)).toBeNaN();
    expect(bf16BitsToF32(0xffff)).toBeNaN();
    expect(fp16BitsToF32(0x7c00)).toBe(Infinity);
    expect(fp16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(fp16BitsToF32(0x7c01)).toBeNaN();
    expect(fp16BitsToF32(0xfe00)).toBeNaN();
  });

  test("fp16 decoding matches the runtime's Float16Array for all 65536 patterns", () => {
    const Float16 = Reflect.get(globalThis, "Float16Array") as
      | (new (buffer: ArrayBuffer) => ArrayLike<number>)
      | undefined;
    expect(Float16).toBeDefined();
    const bits = new Uint16Array(0x10000);
    for (let b = 0; b < bits.length; b++) bits[b] = b;
    const native = new Float16!(bits.buffer);
    let mismatches = 0;
    for (let b = 0; b < bits.length; b++) {
      const ours = fp16BitsToF32(b);
      const theirs = native[b]!;
      if (!(Object.is(ours, theirs) || (Number.isNaN(ours) && Number.isNaN(theirs)))) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  test("every decoded value is exactly representable in f32", () => {
    for (let b = 0; b < 0x10000; b++) {
      for (const x of [bf16BitsToF32(b), fp16BitsToF32(b)]) {
        if (!Number.isNaN(x) && Math.fround(x) !== x) throw new Error(`pattern ${b} decodes to ${x}`);
      }
    }
  });
});

describe("f32ToBf16Bits", () => {
  test("gives back every non-NaN bf16 pattern from its decoded value", () => {
    let mismatches = 0;
    for (let b = 0; b < 0x10000; b++) {
      const x = bf16BitsToF32(b);
      if (Number.isNaN(x)) continue;
      if (f32ToBf16Bits(x, b >> 15) !== b) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  test("rounds a tie to the even code", () => {
    expect(f32ToBf16Bits(1 + 2 ** -8, 0)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8, 0)).toBe(0x3f82);
    expect(f32ToBf16Bits(-(1 + 2 ** -8), 1)).toBe(0xbf80);
  });

  test("rounds off a tie towards the nearer code", () => {
    expect(f32ToBf16Bits(f32Step(1 + 2 ** -8, 1), 0)).toBe(0x3f81);
    expect(f32ToBf16Bits(f32Step(1 + 3 * 2 ** -8, -1), 0)).toBe(0x3f81);
    expect(f32ToBf16Bits(1 + 2 ** -9, 0)).toBe(0x3f80);
  });

  test("rounds subnormal f32 values to nearest even as well", () => {
    expect(f32ToBf16Bits(f32FromBits(0x0000_8000), 0)).toBe(0x0000);
    expect(f32ToBf16Bits(f32FromBits(0x0001_8000), 0)).toBe(0x0002);
    expect(f32ToBf16Bits(f32FromBits(0x0000_8001), 0)).toBe(0x0001);
    expect(f32ToBf16Bits(f32FromBits(0x8000_7fff), 1)).toBe(0x8000);
  });

  test("gives the quiet NaN with the sign passed in", () => {
    expect(f32ToBf16Bits(NaN, 0)).toBe(0x7fc0);
    expect(f32ToBf16Bits(NaN, 1)).toBe(0xffc0);
  });

  test("keeps signed zeros and infinities", () => {
    expect(f32ToBf16Bits(-0, 1)).toBe(0x8000);
    expect(f32ToBf16Bits(0, 0)).toBe(0x0000);
    expect(f32ToBf16Bits(Infinity, 0)).toBe(0x7f80);
    expect(f32ToBf16Bits(-Infinity, 1)).toBe(0xff80);
  });

  test("overflows to infinity only when rounding passes the largest bf16", () => {
    expect(f32ToBf16Bits(f32FromBits(0x7f7f_ffff), 0)).toBe(0x7f80);
    expect(f32ToBf16Bits(f32FromBits(0xff7f_ffff), 1)).toBe(0xff80);
    expect(f32ToBf16Bits(f32FromBits(0x7f7f_7fff), 0)).toBe(0x7f7f);
  });

  test("rounds fp16's largest value up to 65536 and keeps one exact", () => {
    expect(f32ToBf16Bits(fp16BitsToF32(0x7bff), 0)).toBe(0x4780);
    expect(f32ToBf16Bits(fp16BitsToF32(0x3c00), 0)).toBe(0x3f80);
  });
});

describe("fp8BitsToF32", () => {
  test("decodes known e4m3 codes", () => {
    expect(fp8BitsToF32(0x7e, "e4m3")).toBe(448);
    expect(fp8BitsToF32(0xfe, "e4m3")).toBe(-448);
    expect(fp8BitsToF32(0x38, "e4m3")).toBe(1);
    expect(fp8BitsToF32(0x08, "e4m3")).toBe(2 ** -6);
    expect(fp8BitsToF32(0x07, "e4m3")).toBe(7 * 2 ** -9);
    expect(fp8BitsToF32(0x01, "e4m3")).toBe(2 ** -9);
    expect(Object.is(fp8BitsToF32(0x80, "e4m3"), -0)).toBe(true);
    expect(fp8BitsToF32(0x7f, "e4m3")).toBeNaN();
    expect(fp8BitsToF32(0xff, "e4m3")).toBeNaN();
  });

  test("decodes known e5m2 codes", () => {
    expect(fp8BitsToF32(0x7b, "e5m2")).toBe(57344);
    expect(fp8BitsToF32(0x7c, "e5m2")).toBe(Infinity);
    expect(fp8BitsToF32(0xfc, "e5m2")).toBe(-Infinity);
    expect(fp8BitsToF32(0x3c, "e5m2")).toBe(1);
    expect(fp8BitsToF32(0x04, "e5m2")).toBe(2 ** -14);
    expect(fp8BitsToF32(0x01, "e5m2")).toBe(2 ** -16);
    for (const code of [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]) expect(fp8BitsToF32(code, "e5m2")).toBeNaN();
  });

  test("has exactly the format's NaN and infinity codes", () => {
    const special = (format: Fp8Format) =>
      Array.from({ length: 256 }, (_, c) => c).filter((c) => !Number.isFinite(fp8BitsToF32(c, format)));
    expect(special("e4m3")).toEqual([0x7f, 0xff]);
    expect(special("e5m2")).toEqual([0x7c, 0x7d, 0x7e, 0x7f, 0xfc, 0xfd, 0xfe, 0xff]);
  });

  test("grows strictly with the positive code up to the largest finite value", () => {
    for (const format of FORMATS) {
      for (let code = 1; code <= FP8_MAX_CODE[format]; code++) {
        expect(fp8BitsToF32(code, format)).toBeGreaterThan(fp8BitsToF32(code - 1, format));
      }
      expect(fp8BitsToF32(FP8_MAX_CODE[format], format)).toBe(FP8_MAX[format]);
    }
  });

  test("mirrors each positive code in its negative twin", () => {
    for (const format of FORMATS) {
      for (let code = 0; code <= FP8_MAX_CODE[format]; code++) {
        expect(Object.is(fp8BitsToF32(code | 0x80, format), -fp8BitsToF32(code, format))).toBe(true);
      }
    }
  });
});

describe("encodeFp8", () => {
  test("gives back every finite code from its decoded value, -0 included", () => {
    for (const format of FORMATS) {
      for (let code = 0; code < 0x100; code++) {
        const x = fp8BitsToF32(code, format);
        if (!Number.isFinite(x)) continue;
        expect(encodeFp8(x, (code & 0x80) !== 0, false, format)).toBe(code);
      }
    }
    expect(encodeFp8(-0, true, false, "e4m3")).toBe(0x80);
  });

  test("rounds a midpoint to the even code, in subnormals and across exponent boundaries", () => {
    const e4m3: Array<[number, number]> = [
      [2 ** -10, 0x00], // between 0 and the smallest subnormal
      [1.5 * 2 ** -9, 0x02], // between subnormals 0x01 and 0x02
      [7.5 * 2 ** -9, 0x08], // between the largest subnormal and the smallest normal
      [0.96875, 0x38], // between 0.9375 (0x37) and 1 (0x38)
      [1.0625, 0x38],
      [1.1875, 0x3a],
      [400, 0x7c],
      [432, 0x7e],
    ];
    const e5m2: Array<[number, number]> = [
      [2 ** -17, 0x00],
      [1.5 * 2 ** -16, 0x02],
      [3.5 * 2 ** -16, 0x04],
      [1.125, 0x3c],
      [1.375, 0x3e],
      [45056, 0x7a],
      [53248, 0x7a],
    ];
    for (const [q, code] of e4m3) expect(encodeFp8(q, false, false, "e4m3")).toBe(code);
    for (const [q, code] of e5m2) expect(encodeFp8(q, false, false, "e5m2")).toBe(code);
    for (const [q, code] of e4m3) expect(encodeFp8(-q, true, false, "e4m3")).toBe(code | 0x80);
  });

  test("rounds every midpoint between adjacent finite codes to the even one", () => {
    for (const format of FORMATS) {
      for (let code = 0; code < FP8_MAX_CODE[format]; code++) {
        const midpoint = (fp8BitsToF32(code, format) + fp8BitsToF32(code + 1, format)) / 2;
        expect(encodeFp8(midpoint, false, false, format)).toBe(code % 2 === 0 ? code : code + 1);
      }
    }
  });

  test("rounds the nearest f32 just above a midpoint up and just below it down", () => {
    for (const format of FORMATS) {
      for (let code = 0; code < FP8_MAX_CODE[format]; code++) {
        const midpoint = (fp8BitsToF32(code, format) + fp8BitsToF32(code + 1, format)) / 2;
        expect(encodeFp8(f32Step(midpoint, 1), false, false, format)).toBe(code + 1);
        expect(encodeFp8(f32Step(midpoint, -1), false, false, format)).toBe(code);
      }
    }
  });

  test("agrees with a scan over every code on random values", () => {
    const random = mulberry32(0x5eed);
    for (const format of FORMATS) {
      for (let i = 0; i < 20000; i++) {
        // Spread magnitudes over the whole range, below the smallest subnormal and past the max.
        const exponent = Math.floor(random() * 40) - (format === "e4m3" ? 14 : 22);
        const q = Math.fround((1 + random()) * 2 ** exponent);
        const negative = random() < 0.5;
        const signed = negative ? -q : q;
        expect(encodeFp8(signed, negative, false, format)).toBe(encodeByScan(signed, negative, format));
      }
    }
  });

  test("saturates infinities and values at or beyond the largest finite value", () => {
    for (const q of [448, 449, 464, 480, 1e30, Infinity]) expect(encodeFp8(q, false, false, "e4m3")).toBe(0x7e);
    expect(encodeFp8(-Infinity, true, false, "e4m3")).toBe(0xfe);
    expect(encodeFp8(-464, true, false, "e4m3")).toBe(0xfe);
    expect(encodeFp8(f32Step(448, -1), false, false, "e4m3")).toBe(0x7e);
    for (const q of [57344, 61440, 1e10, Infinity]) expect(encodeFp8(q, false, false, "e5m2")).toBe(0x7b);
    expect(encodeFp8(-Infinity, true, false, "e5m2")).toBe(0xfb);
  });

  test("encodes NaN as 0x7F with its sign in both formats", () => {
    for (const format of FORMATS) {
      expect(encodeFp8(NaN, false, true, format)).toBe(0x7f);
      expect(encodeFp8(NaN, true, true, format)).toBe(0xff);
    }
  });

  test("flushes values up to half the smallest subnormal to a zero that keeps the sign", () => {
    expect(encodeFp8(2 ** -10, false, false, "e4m3")).toBe(0x00);
    expect(encodeFp8(2 ** -11, false, false, "e4m3")).toBe(0x00);
    expect(encodeFp8(f32Step(2 ** -10, 1), false, false, "e4m3")).toBe(0x01);
    expect(encodeFp8(-(2 ** -10), true, false, "e4m3")).toBe(0x80);
    expect(encodeFp8(-(2 ** -30), true, false, "e4m3")).toBe(0x80);
    expect(encodeFp8(0, false, false, "e4m3")).toBe(0x00);
    expect(encodeFp8(2 ** -17, false, false, "e5m2")).toBe(0x00);
    expect(encodeFp8(f32Step(2 ** -17, 1), false, false, "e5m2")).toBe(0x01);
    expect(encodeFp8(-(2 ** -17), true, false, "e5m2")).toBe(0x80);
  });
});

describe("f32Div", () => {
  test("rounds the quotient once to f32", () => {
    expect(f32Div(1, 3)).toBe(Math.fround(1 / 3));
    expect(f32Div(1, 3)).not.toBe(1 / 3);
    expect(f32Div(896, 2)).toBe(448);
    expect(f32Div(Infinity, 2)).toBe(Infinity);
  });
});

describe("quantizeFlatRow", () => {
  test("divides by the scale, saturates, and keeps a negative NaN's sign", () => {
    const nope = Uint16Array.of(bf16(896), bf16(1));
    const rope = Uint16Array.of(0xffc0);
    expect(nope[0]).toBe(0x4460);
    expect([...quantizeFlatRow(nope, rope, "bf16", "e4m3", 2)]).toEqual([
      0x7e,
      encodeFp8(0.5, false, false, "e4m3"),
      0xff,
    ]);
    expect(encodeFp8(0.5, false, false, "e4m3")).toBe(0x30);
  });

  test("puts nope before rope and sizes the row to both", () => {
    const nope = Uint16Array.of(0x3c00, 0x4000, 0x8000);
    const rope = Uint16Array.of(0xbc00, 0x7c00);
    const row = quantizeFlatRow(nope, rope, "fp16", "e5m2", 1);
    expect([...row]).toEqual([0x3c, 0x40, 0x80, 0xbc, 0x7b]);
  });

  test("rounds the quotient to f32 before encoding, so a double just past a midpoint still ties", () => {
    // 1.328125 / s is 1.3125000589 in double but exactly 1.3125 in f32: the midpoint of 0x3A and 0x3B.
    const scale = 1.0119047164916992;
    expect(Math.fround(scale)).toBe(scale);
    expect(encodeFp8(1.328125 / scale, false, false, "e4m3")).toBe(0x3b);
    expect([...quantizeFlatRow(Uint16Array.of(0x3faa), new Uint16Array(0), "bf16", "e4m3", scale)]).toEqual([0x3a]);
  });

  test("rejects a scale the kernel could not receive", () => {
    const one = Uint16Array.of(0x3f80);
    for (const scale of [0, -1, NaN, Infinity, 0.1]) {
      expect(() => quantizeFlatRow(one, one, "bf16", "e4m3", scale)).toThrow(RangeError);
    }
  });
});

describe("quantizeDsMlaRow with the amax rule", () => {
  test("rejects parts of the wrong length", () => {
    expect(() => quantizeDsMlaRow(new Uint16Array(511), new Uint16Array(64), "bf16")).toThrow(RangeError);
    expect(() => quantizeDsMlaRow(new Uint16Array(512), new Uint16Array(65), "bf16")).toThrow(RangeError);
  });

  test("stores scale 0 and zero codes for an all-zero tile, keeping -0's sign", () => {
    const { nope, rope } = emptyRow();
    nope[3] = 0x8000;
    nope[127] = 0x8000;
    nope[128] = bf16(1); // a non-zero in the next tile must not leak into this one
    const row = quantizeDsMlaRow(nope, rope, "bf16", "amax");
    expect(row.length).toBe(656);
    expect(scaleBytes(row, 0)).toEqual([0, 0, 0, 0]);
    const expected = new Array<number>(128).fill(0x00);
    expected[3] = 0x80;
    expected[127] = 0x80;
    expect([...row.subarray(0, 128)]).toEqual(expected);
    expect(scaleAt(row, 1)).toBe(f32Div(1, 448));
  });

  test("stores scale 1 for a tile whose amax is 448 and encodes like a direct encode", () => {
    const { nope, rope } = emptyRow();
    const random = mulberry32(7);
    for (let i = 128; i < 256; i++) nope[i] = bf16(Math.fround((random() * 2 - 1) * 440));
    nope[200] = bf16(-448);
    const row = quantizeDsMlaRow(nope, rope, "bf16", "amax");
    expect(scaleAt(row, 1)).toBe(1);
    expect(scaleBytes(row, 1)).toEqual([0x00, 0x00, 0x80, 0x3f]);
    for (let i = 128; i < 256; i++) {
      const bits = nope[i]!;
      expect(row[i]).toBe(encodeFp8(bf16BitsToF32(bits), bits >= 0x8000, false, "e4m3"));
    }
    expect(row[200]).toBe(0xfe);
  });

  test("stores scale 0 for a tile whose only non-zero is infinite and saturates it", () => {
    const { nope, rope } = emptyRow();
    nope[256 + 5] = 0x7f80;
    nope[256 + 6] = 0xff80;
    const row = quantizeDsMlaRow(nope, rope, "bf16", "amax");
    expect(scaleAt(row, 2)).toBe(0);
    expect(row[256 + 5]).toBe(0x7e);
    expect(row[256 + 6]).toBe(0xfe);
    expect(row[256 + 7]).toBe(0x00);
  });

  test("ignores NaN and infinity when choosing a tile's scale", () => {
    const plain = emptyRow();
    for (let i = 384; i < 512; i++) plain.nope[i] = bf16(((i % 9) - 4) * 0.5);
    const noisy = { nope: plain.nope.slice(), rope: plain.rope };
    noisy.nope[400] = 0xffc1;
    noisy.nope[401] = 0x7fc0;
    noisy.nope[402] = 0x7f80;
    const clean = quantizeDsMlaRow(plain.nope, plain.rope, "bf16", "amax");
    const row = quantizeDsMlaRow(noisy.nope, noisy.rope, "bf16", "amax");
    expect(scaleAt(row, 3)).toBe(f32Div(2, 448));
    expect(scaleBytes(row, 3)).toEqual(scaleBytes(clean, 3));
    expect(row[400]).toBe(0xff);
    expect(row[401]).toBe(0x7f);
    expect(row[402]).toBe(0x7e);
    expect(row[403]).toBe(clean[403]);
  });

  test("writes each tile's scale as little-endian fp32 at bytes 512 to 527", () => {
    const { nope, rope } = emptyRow();
    nope[0] = bf16(448);
    nope[128] = bf16(-896);
    nope[256] = bf16(1);
    const row = quantizeDsMlaRow(nope, rope, "bf16", "amax");
    expect(scaleBytes(row, 0)).toEqual([0x00, 0x00, 0x80, 0x3f]);
    expect(scaleBytes(row, 1)).toEqual([0x00, 0x00, 0x00, 0x40]);
    const b = f32Bits(f32Div(1, 448));
    expect(scaleBytes(row, 2)).toEqual([b & 0xff, (b >>> 8) & 0xff, (b >>> 16) & 0xff, b >>> 24]);
    expect(scaleBytes(row, 3)).toEqual([0, 0, 0, 0]);
  });

  test("maps each tile's largest finite magnitude to the top e4m3 code", () => {
    const random = mulberry32(42);
    for (let trial = 0; trial < 50; trial++) {
      const { nope, rope } = emptyRow();
      for (let i = 0; i < 512; i++) nope[i] = Math.floor(random() * 0x7f80) | (random() < 0.5 ? 0x8000 : 0);
      const row = quantizeDsMlaRow(nope, rope, "bf16", "amax");
      for (let t = 0; t < 4; t++) {
        let top = t * 128;
        for (let i = t * 128; i < (t + 1) * 128; i++) {
          if (Math.abs(bf16BitsToF32(nope[i]!)) > Math.abs(bf16BitsToF32(nope[top]!))) top = i;
        }
        expect(row[top]! & 0x7f).toBe(0x7e);
      }
    }
  });

  test("decodes fp16 nope elements before scaling", () => {
    const { nope, rope } = emptyRow();
    nope[0] = 0x3c00; // 1
    nope[1] = 0xb800; // -0.5
    nope[2] = 0x0001; // 2^-24, far below the tile's resolution
    const row = quantizeDsMlaRow(nope, rope, "fp16", "amax");
    expect(scaleAt(row, 0)).toBe(f32Div(1, 448));
    expect(row[0]).toBe(0x7e);
    expect(row[1]).toBe(0xf6); // -224
    expect(row[2]).toBe(0x00);
  });

  test("copies bf16 rope bits verbatim, NaN payloads included", () => {
    const { nope, rope } = emptyRow();
    const bits = [0x7f81, 0xffff, 0x8000, 0x0001, 0x3f80, 0xff80];
    bits.forEach((b, j) => (rope[j] = b));
    const row = quantizeDsMlaRow(nope, rope, "bf16", "amax");
    expect(bits.map((_, j) => ropeBitsAt(row, j))).toEqual(bits);
    expect([...row.subarray(528, 530)]).toEqual([0x81, 0x7f]);
  });

  test("converts fp16 rope to bf16", () => {
    const { nope, rope } = emptyRow();
    rope[0] = 0x3c00; // 1
    rope[1] = 0x0001; // 2^-24
    rope[2] = 0xfe01; // a negative NaN
    rope[3] = 0x7bff; // 65504 rounds up to 65536
    rope[63] = 0xfc00;
    const row = quantizeDsMlaRow(nope, rope, "fp16", "amax");
    expect([0, 1, 2, 3, 63].map((j) => ropeBitsAt(row, j))).toEqual([0x3f80, 0x3380, 0xffc0, 0x4780, 0xff80]);
    expect([...row.subarray(528, 530)]).toEqual([0x80, 0x3f]);
  });
});

describe("ceilPow2", () => {
  test("keeps powers of two and rounds everything else up to the next", () => {
    for (const k of [-140, -13, -1, 0, 1, 120]) expect(ceilPow2(2 ** k)).toBe(2 ** k);
    expect(ceilPow2(f32Step(1, 1))).toBe(2);
    expect(ceilPow2(f32Step(1, -1))).toBe(1);
    expect(ceilPow2(3)).toBe(4);
    expect(ceilPow2(SCALE_FLOOR)).toBe(2 ** -13);
    expect(ceilPow2(f32Div(SCALE_FLOOR, 448))).toBe(2 ** -22);
  });

  test("refuses zero, negatives and non-finite values", () => {
    for (const v of [0, -1, Infinity, NaN]) expect(() => ceilPow2(v)).toThrow(RangeError);
  });
});

describe("tileScale", () => {
  test("pow2: the smallest power of two not below amax / 448, at least 2^-13", () => {
    expect(tileScale("fp8_ds_mla", "pow2", 448)).toBe(1);
    expect(tileScale("fp8_ds_mla", "pow2", f32Step(448, 1))).toBe(2);
    expect(tileScale("fp8_ds_mla", "pow2", 1)).toBe(2 ** -8);
    expect(tileScale("fp8_ds_mla", "pow2", 0)).toBe(2 ** -13);
    expect(tileScale("fp8_ds_mla", "pow2", 0.0448)).toBe(2 ** -13);
    expect(tileScale("fp8_ds_mla", "pow2", 448 * 2 ** -13)).toBe(2 ** -13);
    expect(tileScale("fp8_ds_mla", "pow2", f32Step(448 * 2 ** -13, 1))).toBe(2 ** -12);
    expect(tileScale("fp8_ds_mla", "pow2", bf16BitsToF32(0x7f7f))).toBe(2 ** 120);
    expect(tileScale("fp8_ds_mla", "pow2", 65504)).toBe(256);
    expect(tileScale("fp8_ds_v4", "pow2", 1)).toBe(2 ** -8);
  });

  test("pow2 puts every tile's amax in (224, 448] once it is past the floor", () => {
    const random = mulberry32(99);
    for (let i = 0; i < 5000; i++) {
      const amax = Math.fround((1 + random()) * 2 ** (Math.floor(random() * 60) - 4));
      const scale = tileScale("fp8_ds_mla", "pow2", amax);
      expect(Number.isInteger(Math.log2(scale))).toBe(true);
      expect(amax / scale).toBeLessThanOrEqual(448);
      expect(amax / scale).toBeGreaterThan(224);
    }
  });

  test("amax for ds_mla: amax / 448 in fp32, and 0 for an all-zero tile", () => {
    expect(tileScale("fp8_ds_mla", "amax", 448)).toBe(1);
    expect(tileScale("fp8_ds_mla", "amax", 1)).toBe(f32Div(1, 448));
    expect(tileScale("fp8_ds_mla", "amax", 0)).toBe(0);
  });

  test("amax for the indexer floors amax at 1e-4 first; ue8m0 rounds that up to a power of two", () => {
    expect(tileScale("fp8_indexer", "amax", 0)).toBe(f32Div(SCALE_FLOOR, 448));
    expect(tileScale("fp8_indexer", "amax", 5e-5)).toBe(f32Div(SCALE_FLOOR, 448));
    expect(tileScale("fp8_indexer", "amax", 1)).toBe(f32Div(1, 448));
    expect(tileScale("fp8_indexer", "ue8m0", 0)).toBe(2 ** -22);
    expect(tileScale("fp8_indexer", "ue8m0", 1)).toBe(2 ** -8);
    expect(tileScale("fp8_indexer", "ue8m0", 448)).toBe(1);
  });

  test("refuses a rule the format does not have", () => {
    expect(() => tileScale("fp8_ds_v4", "amax", 1)).toThrow(RangeError);
    expect(() => tileScale("fp8_indexer", "pow2", 1)).toThrow(RangeError);
    expect(() => tileScale("fp8_ds_mla", "ue8m0", 1)).toThrow(RangeError);
  });

  test("each format's default rule is one it has", () => {
    expect(DEFAULT_SCALE_RULE).toEqual({ fp8_ds_mla: "pow2", fp8_ds_v4: "pow2", fp8_indexer: "amax" });
  });
});

describe("quantizeDsMlaRow with the pow2 rule (the default)", () => {
  test("is the default", () => {
    const random = mulberry32(3);
    const { nope, rope } = emptyRow();
    for (let i = 0; i < 512; i++) nope[i] = bf16((random() * 2 - 1) * 3);
    expect(quantizeDsMlaRow(nope, rope, "bf16")).toEqual(quantizeDsMlaRow(nope, rope, "bf16", "pow2"));
    expect(quantizeDsMlaRow(nope, rope, "bf16")).not.toEqual(quantizeDsMlaRow(nope, rope, "bf16", "amax"));
  });

  test("gives an all-zero tile the floor 2^-13, keeping its zeros' signs and saturating inf", () => {
    const { nope, rope } = emptyRow();
    nope[3] = 0x8000;
    nope[5] = 0x7f80;
    nope[6] = 0xff80;
    nope[7] = 0xffc0;
    const row = quantizeDsMlaRow(nope, rope, "bf16");
    expect(scaleBytes(row, 0)).toEqual([0x00, 0x00, 0x00, 0x39]);
    expect([row[3], row[4], row[5], row[6], row[7]]).toEqual([0x80, 0x00, 0x7e, 0xfe, 0xff]);
  });

  test("multiplies a tiny-amax tile's elements by 8192 before encoding", () => {
    const { nope, rope } = emptyRow();
    const values = [0.01, -0.04, 0.0001, 2 ** -30];
    values.forEach((x, i) => (nope[128 + i] = bf16(x)));
    const row = quantizeDsMlaRow(nope, rope, "bf16");
    expect(scaleAt(row, 1)).toBe(2 ** -13);
    values.forEach((_, i) => {
      const x = bf16BitsToF32(nope[128 + i]!);
      expect(row[128 + i]).toBe(encodeFp8(x * 8192, x < 0, false, "e4m3"));
    });
  });

  test("stores a power-of-two scale per tile and puts each tile's largest element in (224, 448]", () => {
    const random = mulberry32(11);
    for (let trial = 0; trial < 30; trial++) {
      const { nope, rope } = emptyRow();
      for (let i = 0; i < 512; i++) nope[i] = bf16((random() * 2 - 1) * 2 ** (Math.floor(random() * 30) - 10));
      const row = quantizeDsMlaRow(nope, rope, "bf16");
      for (let t = 0; t < 4; t++) {
        const scale = scaleAt(row, t);
        expect(Number.isInteger(Math.log2(scale))).toBe(true);
        let top = 0;
        for (let i = t * 128; i < (t + 1) * 128; i++) top = Math.max(top, row[i]! & 0x7f);
        expect(top).toBeGreaterThanOrEqual(0x76); // 224
        expect(top).toBeLessThanOrEqual(0x7e); // 448
      }
    }
  });
});

describe("e8m0OfPow2", () => {
  test("is the exponent biased by 127, for powers of two only", () => {
    expect(e8m0OfPow2(1)).toBe(127);
    expect(e8m0OfPow2(2 ** -13)).toBe(114);
    expect(e8m0OfPow2(2 ** 120)).toBe(247);
    expect(() => e8m0OfPow2(3)).toThrow(RangeError);
  });
});

describe("quantizeDsV4Token", () => {
  const empty = () => ({ nope: new Uint16Array(DS_V4_FP8.nopeDim), rope: new Uint16Array(DS_V4_FP8.ropeDim) });

  test("rejects parts of the wrong length", () => {
    expect(() => quantizeDsV4Token(new Uint16Array(512), new Uint16Array(64), "bf16")).toThrow(RangeError);
    expect(() => quantizeDsV4Token(new Uint16Array(448), new Uint16Array(32), "bf16")).toThrow(RangeError);
  });

  test("scales each 64-element tile on its own and stores its e8m0 byte", () => {
    const { nope, rope } = empty();
    nope[64] = bf16(448); // tile 1: scale 1
    nope[200] = bf16(-1); // tile 3: 2^-8
    nope[447] = bf16(450); // tile 6: 2
    const { row, scales } = quantizeDsV4Token(nope, rope, "bf16");
    expect(row.length).toBe(576);
    expect([...scales]).toEqual([114, 127, 114, 119, 114, 114, 128]);
    expect(row[64]).toBe(0x7e);
    expect(row[200]).toBe(encodeFp8(-256, true, false, "e4m3"));
    expect(row[447]).toBe(encodeFp8(225, false, false, "e4m3"));
  });

  test("keeps bf16 rope bits after the 448 e4m3 bytes and rounds fp16 rope to bf16", () => {
    const { nope, rope } = empty();
    rope[0] = 0x7f81;
    rope[63] = 0x8001;
    const bf = quantizeDsV4Token(nope, rope, "bf16").row;
    expect([...bf.subarray(448, 450)]).toEqual([0x81, 0x7f]);
    expect([...bf.subarray(574, 576)]).toEqual([0x01, 0x80]);
    rope[0] = 0x3c00;
    rope[63] = 0xfe01;
    const fp = quantizeDsV4Token(nope, rope, "fp16").row;
    expect([...fp.subarray(448, 450)]).toEqual([0x80, 0x3f]);
    expect([...fp.subarray(574, 576)]).toEqual([0xc0, 0xff]);
  });
});

describe("quantizeIndexerToken", () => {
  test("amax: one scale max(amax, 1e-4) / 448 for the whole token, elements by division", () => {
    const k = new Uint16Array(128);
    k[0] = bf16(1);
    k[1] = bf16(-0.3);
    k[2] = 0x7f80;
    const { values, scale } = quantizeIndexerToken(k, "bf16");
    expect(scale).toBe(f32Div(1, 448));
    expect(values[0]).toBe(0x7e);
    expect(values[1]).toBe(encodeFp8(f32Div(bf16BitsToF32(k[1]!), scale), true, false, "e4m3"));
    expect(values[2]).toBe(0x7e);
  });

  test("amax: an all-zero token gets 1e-4 / 448 and keeps its zeros' signs", () => {
    const k = new Uint16Array(128);
    k[9] = 0x8000;
    const { values, scale } = quantizeIndexerToken(k, "fp16");
    expect(scale).toBe(f32Div(SCALE_FLOOR, 448));
    expect(values[9]).toBe(0x80);
    expect(values[10]).toBe(0x00);
  });

  test("ue8m0: the amax scale rounded up to a power of two", () => {
    const random = mulberry32(5);
    for (let trial = 0; trial < 200; trial++) {
      const k = Uint16Array.from({ length: 128 }, () => bf16((random() * 2 - 1) * 2 ** (Math.floor(random() * 40) - 20)));
      const amaxRule = quantizeIndexerToken(k, "bf16", "amax").scale;
      const ue8m0 = quantizeIndexerToken(k, "bf16", "ue8m0").scale;
      expect(Number.isInteger(Math.log2(ue8m0))).toBe(true);
      expect(ue8m0).toBeGreaterThanOrEqual(amaxRule);
      expect(ue8m0).toBeLessThan(2 * amaxRule);
    }
  });

  test("rejects a token of the wrong length", () => {
    expect(() => quantizeIndexerToken(new Uint16Array(64), "bf16")).toThrow(RangeError);
  });
});
