import { describe, expect, it } from "bun:test";
import { BUCKET_COUNT, bucketOf, builtinTable, dispatch, layoutKey, type DispatchTable } from "../../src/dispatch.ts";
import { MlaKvError } from "../../ffi/errors.ts";

describe("bucketOf", () => {
  it("puts n = 1 (and n = 0) in bucket 0", () => {
    expect(bucketOf(1)).toBe(0);
    expect(bucketOf(0)).toBe(0);
  });

  it("puts n in (2^(k-1), 2^k] in bucket k", () => {
    expect(bucketOf(2)).toBe(1);
    expect(bucketOf(3)).toBe(2);
    expect(bucketOf(4)).toBe(2);
    expect(bucketOf(5)).toBe(3);
    expect(bucketOf(512)).toBe(9);
    expect(bucketOf(513)).toBe(10);
    expect(bucketOf(1024)).toBe(10);
    expect(bucketOf(1025)).toBe(11);
  });

  it("agrees with ceil(log2(n)) for every n up to 2^17", () => {
    for (let n = 2; n <= 2 ** 17; n++) {
      if (bucketOf(n) !== Math.ceil(Math.log2(n))) throw new Error(`bucketOf(${n}) = ${bucketOf(n)}`);
    }
  });

  it("clamps every n past 131072 to the last bucket", () => {
    expect(bucketOf(131072)).toBe(17);
    expect(bucketOf(131073)).toBe(17);
    expect(bucketOf(2 ** 40)).toBe(17);
    expect(bucketOf(Number.MAX_SAFE_INTEGER)).toBe(BUCKET_COUNT - 1);
  });

  it("refuses a negative or fractional n", () => {
    expect(() => bucketOf(-1)).toThrow(MlaKvError);
    expect(() => bucketOf(1.5)).toThrow(MlaKvError);
    expect(() => bucketOf(Number.NaN)).toThrow(MlaKvError);
  });
});

describe("builtinTable", () => {
  describe("on sm_90 and newer", () => {
    const table = builtinTable(9);

    it("has one entry per bucket", () => {
      expect(table.length).toBe(BUCKET_COUNT);
    });

    it("uses the vector path with 4 warps and 1 row per warp for small batches", () => {
      for (const n of [1, 2, 64, 300, 512]) {
        expect(dispatch(table, n, true)).toEqual({ path: "vector", warps: 4, rowsPerWarp: 1 });
      }
    });

    it("uses TMA with 8 warps from n = 768 on", () => {
      for (const n of [768, 1024, 4096, 131072, 10_000_000]) {
        expect(dispatch(table, n, true)).toEqual({ path: "tma", warps: 8, rowsPerWarp: 1 });
      }
    });

    it("decides a whole bucket by its largest n, so 513..767 already take the large-batch choice", () => {
      expect(dispatch(table, 513, true)).toEqual(dispatch(table, 768, true));
      expect(dispatch(table, 512, true).path).toBe("vector");
    });

    it("falls back to vector with 8 warps and 2 rows per warp when TMA is not allowed", () => {
      expect(dispatch(table, 4096, false)).toEqual({ path: "vector", warps: 8, rowsPerWarp: 2 });
    });
  });

  describe("before sm_90", () => {
    const table = builtinTable(8);

    it("never chooses TMA, even when it is allowed", () => {
      for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
        expect(dispatch(table, 2 ** bucket, true).path).toBe("vector");
      }
    });

    it("uses vector with 8 warps and 2 rows per warp for large batches", () => {
      expect(dispatch(table, 100_000, true)).toEqual({ path: "vector", warps: 8, rowsPerWarp: 2 });
    });
  });
});

describe("dispatch", () => {
  const marked: DispatchTable = Array.from({ length: BUCKET_COUNT }, (_, bucket) => ({
    best: { path: "tma", warps: 16, rowsPerWarp: (bucket % 3 === 0 ? 1 : bucket % 3 === 1 ? 2 : 4) as 1 | 2 | 4 },
    vector: { path: "vector", warps: 2, rowsPerWarp: 4 },
  }));

  it("returns the bucket's best entry when TMA is allowed", () => {
    expect(dispatch(marked, 3, true)).toBe(marked[2]!.best);
  });

  it("returns the bucket's vector entry when TMA is not allowed", () => {
    expect(dispatch(marked, 3, false)).toBe(marked[2]!.vector);
  });

  it("answers n = 0 from the first bucket instead of failing", () => {
    expect(dispatch(marked, 0, true)).toBe(marked[0]!.best);
  });

  it("uses the last entry of a shorter table for larger buckets", () => {
    const short = marked.slice(0, 4);
    expect(dispatch(short, 1_000_000, true)).toBe(short[3]!.best);
  });

  it("refuses an empty table", () => {
    expect(() => dispatch([], 4, true)).toThrow(MlaKvError);
  });
});

describe("layoutKey", () => {
  it("names nope bytes, rope bytes and the loc width", () => {
    expect(layoutKey({ nopeBytes: 1024, ropeBytes: 128, locBytes: 8 })).toBe("1024+128/i64");
    expect(layoutKey({ nopeBytes: 656, ropeBytes: 0, locBytes: 4 })).toBe("656+0/i32");
  });
});
