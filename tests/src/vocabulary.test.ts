import { describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MLA_KV_FORMAT_CODES, MLA_KV_PATH_CODES, MLA_KV_SCALE_RULE_CODES, MLA_KV_SOURCE_CODES } from "../../ffi/abi.ts";
import {
  BUCKET_COUNT,
  FORMAT_SCALE_RULES,
  LAST_BUCKET,
  PAGED_FORMATS,
  PATHS,
  QUANTIZED_FORMATS,
  REQUESTED_FORMATS,
  ROWS_PER_WARP,
  SCALE_RULES,
  SOURCE_DTYPES,
  SPECIALIZED_ROW_BYTES,
  WARPS,
  WRITE_FORMATS,
  bucketN,
  bucketOf,
  isPaged,
  isQuantized,
} from "../../src/vocabulary.ts";

const header = readFileSync(join(import.meta.dir, "..", "..", "cuda", "include", "mla_kv.h"), "utf8");

describe("the lists of the ABI", () => {
  it("name the paths of the header's code map, in its order", () => {
    expect(PATHS).toEqual(["vector", "tma", "specialized", "spread"]);
    expect([...PATHS]).toEqual(Object.keys(MLA_KV_PATH_CODES) as typeof PATHS[number][]);
  });

  it("name the quantizing formats, scale rules and source dtypes of the code maps", () => {
    expect([...QUANTIZED_FORMATS]).toEqual(Object.keys(MLA_KV_FORMAT_CODES) as typeof QUANTIZED_FORMATS[number][]);
    expect(QUANTIZED_FORMATS).toEqual(["fp8_e4m3", "fp8_e5m2", "fp8_ds_mla", "fp8_ds_v4", "fp8_indexer"]);
    expect([...SCALE_RULES]).toEqual(Object.keys(MLA_KV_SCALE_RULE_CODES) as typeof SCALE_RULES[number][]);
    expect([...SOURCE_DTYPES]).toEqual(Object.keys(MLA_KV_SOURCE_CODES) as typeof SOURCE_DTYPES[number][]);
  });

  it("put the copy before the quantizing formats", () => {
    expect(WRITE_FORMATS).toEqual(["copy", ...QUANTIZED_FORMATS]);
  });

  it("cannot be changed by a caller", () => {
    for (const list of [PATHS, QUANTIZED_FORMATS, SCALE_RULES, SOURCE_DTYPES, WRITE_FORMATS, WARPS, ROWS_PER_WARP, REQUESTED_FORMATS, PAGED_FORMATS]) {
      expect(Object.isFrozen(list)).toBe(true);
    }
    expect(Object.isFrozen(SPECIALIZED_ROW_BYTES)).toBe(true);
    expect(Object.isFrozen(FORMAT_SCALE_RULES)).toBe(true);
  });

  it("give launch shapes of 1-16 warps by powers of two and 1, 2 or 4 rows", () => {
    expect(WARPS).toEqual([1, 2, 4, 8, 16]);
    expect(ROWS_PER_WARP).toEqual([1, 2, 4]);
  });
});

describe("the specialized row sizes", () => {
  it("are the header's MLA_KV_SPECIALIZED_ROWS", () => {
    const m = /#define MLA_KV_SPECIALIZED_ROWS \{([0-9, ]+)\}/.exec(header);
    expect(m).not.toBeNull();
    const sizes = m![1]!.split(",").map((s) => Number(s.trim()));
    expect(Object.keys(SPECIALIZED_ROW_BYTES).map(Number).sort((a, b) => a - b)).toEqual(sizes.sort((a, b) => a - b));
  });

  it("each take the widest vector up to 16 bytes that divides the row", () => {
    for (const [row, width] of Object.entries(SPECIALIZED_ROW_BYTES)) {
      const widest = [16, 8, 4, 2, 1].find((w) => Number(row) % w === 0);
      expect([Number(row), width]).toEqual([Number(row), widest as 8 | 16]);
    }
    expect(SPECIALIZED_ROW_BYTES[584]).toBe(8);
    expect(SPECIALIZED_ROW_BYTES[1152]).toBe(16);
  });
});

describe("formats", () => {
  it("are quantized unless they copy", () => {
    expect(WRITE_FORMATS.filter(isQuantized)).toEqual([...QUANTIZED_FORMATS]);
    expect(isQuantized("copy")).toBe(false);
    expect(isQuantized(undefined)).toBe(false);
  });

  it("are paged exactly when PAGED_FORMATS lists them: DeepSeek V4's and the indexer's", () => {
    for (const format of WRITE_FORMATS) expect([format, isPaged(format)]).toEqual([format, PAGED_FORMATS.includes(format as never)]);
    expect(PAGED_FORMATS).toEqual(["fp8_ds_v4", "fp8_indexer"]);
    expect(isPaged(undefined)).toBe(false);
  });

  it("give each tile-scaled format its rules, the default first, all of them known scale rules", () => {
    expect(FORMAT_SCALE_RULES).toEqual({ fp8_ds_mla: ["pow2", "amax"], fp8_ds_v4: ["pow2"], fp8_indexer: ["amax", "ue8m0"] });
    for (const rules of Object.values(FORMAT_SCALE_RULES)) for (const rule of rules!) expect(SCALE_RULES).toContain(rule);
    expect(FORMAT_SCALE_RULES.fp8_e4m3).toBeUndefined();
  });

  it("may be asked for by name, the flat fp8 formats as \"fp8\" (the cache's dtype says which)", () => {
    expect(REQUESTED_FORMATS).toEqual(["copy", "fp8", "fp8_ds_mla", "fp8_ds_v4", "fp8_indexer"]);
    for (const format of Object.keys(FORMAT_SCALE_RULES)) expect(REQUESTED_FORMATS).toContain(format as never);
  });
});

describe("bucketOf", () => {
  it("puts n = 1 (and n = 0) in bucket 0", () => {
    expect(bucketOf(1)).toBe(0);
    expect(bucketOf(0)).toBe(0);
  });

  it("puts n in (2^(k-1), 2^k] in bucket k", () => {
    expect([2, 3, 4, 5, 8, 9, 512, 513, 1024, 1025, 65536].map(bucketOf)).toEqual([1, 2, 2, 3, 3, 4, 9, 10, 10, 11, 16]);
  });

  it("agrees with ceil(log2(n)) for every n up to 2^16, and is tuned at the bucket's largest n", () => {
    for (let n = 2; n <= 2 ** 16; n++) {
      const b = bucketOf(n);
      if (b !== Math.ceil(Math.log2(n))) throw new Error(`bucketOf(${n}) = ${b}`);
      if (!(bucketN(b) >= n && (b === 0 || bucketN(b - 1) < n))) throw new Error(`n = ${n} is not in (2^${b - 1}, 2^${b}]`);
    }
  });

  it("serves every n past 65536 from the last bucket", () => {
    expect(BUCKET_COUNT).toBe(17);
    expect(LAST_BUCKET).toBe(16);
    for (const n of [65537, 131072, 2 ** 31, 2 ** 32 + 1, 2 ** 40, Number.MAX_SAFE_INTEGER]) expect(bucketOf(n)).toBe(LAST_BUCKET);
  });

  it("tunes bucket b at n = 2^b", () => {
    expect(Array.from({ length: BUCKET_COUNT }, (_, b) => bucketN(b))).toEqual(Array.from({ length: BUCKET_COUNT }, (_, b) => 2 ** b));
  });
});
