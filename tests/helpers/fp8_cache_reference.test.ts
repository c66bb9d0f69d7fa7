import { describe, expect, test } from "bun:test";
import { definedBytes, formatRowBytes, referenceQuantizedWrite, type QuantizedWrite } from "./fp8_cache_reference.ts";
import { dsV4PageBytes, indexerPageBytes, quantizeDsV4Token, quantizeIndexerToken } from "./fp8_reference.ts";

const POISON = 0xa5;

function write(overrides: Partial<QuantizedWrite> & Pick<QuantizedWrite, "format" | "capacity" | "cacheRowStride" | "loc" | "nopeElems" | "ropeElems">): { cache: Uint8Array; outOfRange: ReturnType<typeof referenceQuantizedWrite> } {
  const rows = overrides.pageSize ? overrides.capacity / overrides.pageSize : overrides.capacity;
  const cache = new Uint8Array(rows * overrides.cacheRowStride).fill(POISON);
  const n = overrides.loc.length;
  const nope = Uint16Array.from({ length: n * overrides.nopeElems }, (_, k) => 0x3f80 + (k % 97));
  const rope = Uint16Array.from({ length: Math.max(1, n * overrides.ropeElems) }, (_, k) => 0x4000 + (k % 31));
  const outOfRange = referenceQuantizedWrite({
    source: "bf16", cache, nope, nopeStride: overrides.nopeElems, rope, ropeStride: overrides.ropeElems, ...overrides,
  });
  return { cache, outOfRange };
}

describe("page sizes", () => {
  test("a DeepSeek V4 page is P x 584 bytes rounded up to a multiple of 576", () => {
    expect([1, 7, 16, 48, 64].map(dsV4PageBytes)).toEqual([1152, 4608, 9792, 28224, 37440]);
  });

  test("an indexer page is P x 132 bytes", () => {
    expect([1, 7, 64].map(indexerPageBytes)).toEqual([132, 924, 8448]);
    expect(formatRowBytes("fp8_indexer", 128, 0, 7)).toBe(924);
    expect(formatRowBytes("fp8_ds_mla", 512, 64, 0)).toBe(656);
    expect(formatRowBytes("fp8_e5m2", 256, 32, 0)).toBe(288);
  });
});

describe("referenceQuantizedWrite", () => {
  test("puts a DeepSeek V4 slot in page slot / P as token slot % P: row after row, then the scale words", () => {
    const pageSize = 7;
    const stride = dsV4PageBytes(pageSize) + 16;
    const { cache } = write({ format: "fp8_ds_v4", capacity: 21, cacheRowStride: stride, pageSize, loc: [17], nopeElems: 448, ropeElems: 64 });
    const nope = Uint16Array.from({ length: 448 }, (_, k) => 0x3f80 + (k % 97));
    const rope = Uint16Array.from({ length: 64 }, (_, k) => 0x4000 + (k % 31));
    const { row, scales } = quantizeDsV4Token(nope, rope, "bf16");
    const page = 2 * stride;
    const token = 3;
    expect(cache.subarray(page + token * 576, page + token * 576 + 576)).toEqual(row);
    const word = page + pageSize * 576 + token * 8;
    expect(cache.subarray(word, word + 7)).toEqual(scales);
    expect(cache[word + 7]).toBe(POISON);
    let written = 0;
    for (const b of cache) if (b !== POISON) written++;
    expect(written).toBeLessThanOrEqual(576 + 7);
    expect(written).toBeGreaterThan(500);
  });

  test("puts an indexer slot's values at token x 128 and its fp32 scale after all the page's values", () => {
    const pageSize = 16;
    const { cache } = write({ format: "fp8_indexer", capacity: 32, cacheRowStride: indexerPageBytes(pageSize), pageSize, loc: [20], nopeElems: 128, ropeElems: 0 });
    const k = Uint16Array.from({ length: 128 }, (_, j) => 0x3f80 + (j % 97));
    const { values, scale } = quantizeIndexerToken(k, "bf16");
    const page = indexerPageBytes(pageSize);
    expect(cache.subarray(page + 4 * 128, page + 5 * 128)).toEqual(values);
    expect(new DataView(cache.buffer).getFloat32(page + pageSize * 128 + 4 * 4, true)).toBe(scale);
  });

  test("skips padding and the reserved slot, and counts loc past the capacity with the smallest row index", () => {
    const { cache, outOfRange } = write({ format: "fp8_ds_mla", capacity: 4, cacheRowStride: 656, loc: [9, -1, 2, 4, 3], reservedSlot: 2, nopeElems: 512, ropeElems: 64 });
    expect(outOfRange).toEqual({ count: 2, first: 0 });
    expect(cache.subarray(0, 3 * 656).every((b) => b === POISON)).toBe(true);
    expect(cache.subarray(3 * 656).some((b) => b !== POISON)).toBe(true);
  });

  test("refuses a page size that does not fit the format or divide the capacity", () => {
    expect(() => write({ format: "fp8_ds_v4", capacity: 10, cacheRowStride: 4608, pageSize: 7, loc: [], nopeElems: 448, ropeElems: 64 })).toThrow(RangeError);
    expect(() => write({ format: "fp8_ds_mla", capacity: 16, cacheRowStride: 656, pageSize: 16, loc: [], nopeElems: 512, ropeElems: 64 })).toThrow(RangeError);
  });
});

describe("definedBytes", () => {
  test("marks a DeepSeek V4 page's rows and scale words, not the pad bytes, the padding or the stride's tail", () => {
    const mask = definedBytes("fp8_ds_v4", 448, 64, 2, 1152 + 16, 1);
    expect(mask.length).toBe(2 * 1168);
    const defined = (from: number, to: number) => mask.subarray(from, to).every((b) => b === 1);
    const free = (from: number, to: number) => mask.subarray(from, to).every((b) => b === 0);
    expect(defined(0, 583)).toBe(true);
    expect(free(583, 1168)).toBe(true);
    expect(defined(1168, 1168 + 583)).toBe(true);
    expect(free(1168 + 583, 2336)).toBe(true);
  });

  test("marks a row format's row and not the rest of its stride", () => {
    const mask = definedBytes("fp8_e4m3", 16, 2, 3, 20);
    expect([...mask.subarray(0, 20)]).toEqual([...new Array(18).fill(1), 0, 0]);
  });
});
