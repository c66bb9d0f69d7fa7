import { describe, expect, it } from "bun:test";
import { DTYPES, dtypeBytes, isDType, LOC_DTYPES, ROW_DTYPES } from "../../src/dtypes.ts";

describe("DTYPES", () => {
  it("gives each dtype its byte size", () => {
    expect(Object.fromEntries(Object.values(DTYPES).map((d) => [d.name, d.bytes]))).toEqual({
      bf16: 2, fp16: 2, u8: 1, fp8_e4m3: 1, fp8_e5m2: 1, i32: 4, i64: 8,
    });
  });

  it("carries 16-bit floats as Uint16Array, 8-bit types as Uint8Array, and integers as their typed arrays", () => {
    expect(DTYPES.bf16.HostArray).toBe(Uint16Array);
    expect(DTYPES.fp16.HostArray).toBe(Uint16Array);
    expect(DTYPES.u8.HostArray).toBe(Uint8Array);
    expect(DTYPES.fp8_e4m3.HostArray).toBe(Uint8Array);
    expect(DTYPES.fp8_e5m2.HostArray).toBe(Uint8Array);
    expect(DTYPES.i32.HostArray).toBe(Int32Array);
    expect(DTYPES.i64.HostArray).toBe(BigInt64Array);
  });

  it("uses host arrays whose element size equals the dtype's", () => {
    for (const info of Object.values(DTYPES)) expect(info.HostArray.BYTES_PER_ELEMENT).toBe(info.bytes);
  });

  it("keeps row dtypes and loc dtypes apart", () => {
    expect(ROW_DTYPES.some((d) => LOC_DTYPES.includes(d))).toBe(false);
    expect(ROW_DTYPES.length + LOC_DTYPES.length).toBe(Object.keys(DTYPES).length);
  });
});

describe("isDType", () => {
  it("accepts known names and nothing else", () => {
    expect(isDType("fp8_e4m3")).toBe(true);
    expect(isDType("float16")).toBe(false);
    expect(isDType("constructor")).toBe(false);
    expect(isDType(2)).toBe(false);
  });
});

describe("dtypeBytes", () => {
  it("returns bytes per element", () => {
    expect(dtypeBytes("i64")).toBe(8);
  });
});
