import { describe, expect, it } from "bun:test";
import { copyLayout, layoutGeometry, layoutKey, layoutRowBytes, parseLayoutKey, type WriteLayout } from "../../src/layout_key.ts";
import { FORMAT_SCALE_RULES, QUANTIZED_FORMATS, SOURCE_DTYPES, WRITE_FORMATS, isPaged, type QuantizedFormat } from "../../src/vocabulary.ts";

/** A quantizing layout with the format's default rule (or none) and, for the paged ones, 64 tokens a page. */
function quantized(format: QuantizedFormat, nopeElems: number, ropeElems: number, extra: Partial<WriteLayout> = {}): WriteLayout {
  return {
    format,
    sourceDtype: "bf16",
    nopeBytes: 2 * nopeElems,
    ropeBytes: 2 * ropeElems,
    locBytes: 8,
    pageSize: isPaged(format) ? 64 : 0,
    scaleRule: FORMAT_SCALE_RULES[format]?.[0] ?? null,
    ...extra,
  };
}

/** Every layout shape the formats allow: each scale rule, source dtype and loc width. */
function everyLayout(): WriteLayout[] {
  const out: WriteLayout[] = [];
  for (const locBytes of [4, 8] as const) {
    out.push(copyLayout(1024, 128, locBytes), copyLayout(656, 0, locBytes), copyLayout(0, 128, locBytes), copyLayout(1, 999_999_999, locBytes));
    for (const format of QUANTIZED_FORMATS) {
      for (const sourceDtype of SOURCE_DTYPES) {
        for (const scaleRule of FORMAT_SCALE_RULES[format] ?? [null]) {
          const shape = format === "fp8_ds_v4" ? [448, 64] : format === "fp8_indexer" ? [128, 0] : [512, 64];
          out.push(quantized(format, shape[0]!, shape[1]!, { sourceDtype, scaleRule, locBytes, pageSize: isPaged(format) ? 16 * locBytes : 0 }));
        }
      }
    }
  }
  return out;
}

describe("layoutKey", () => {
  it("names a copy by its nope and rope bytes and the loc width", () => {
    expect(layoutKey(copyLayout(1024, 128, 8))).toBe("1024+128/i64");
    expect(layoutKey(copyLayout(656, 0, 4))).toBe("656+0/i32");
  });

  it("names a quantizing write by its format, scale rule, source dtype, elements, page size and loc width", () => {
    expect(layoutKey(quantized("fp8_ds_mla", 512, 64))).toBe("fp8_ds_mla.pow2<bf16:512+64/i64");
    expect(layoutKey(quantized("fp8_ds_mla", 512, 64, { scaleRule: "amax", locBytes: 4 }))).toBe("fp8_ds_mla.amax<bf16:512+64/i32");
    expect(layoutKey(quantized("fp8_ds_v4", 448, 64))).toBe("fp8_ds_v4.pow2<bf16:448+64@p64/i64");
    expect(layoutKey(quantized("fp8_indexer", 128, 0, { sourceDtype: "fp16", scaleRule: "ue8m0", pageSize: 32 }))).toBe("fp8_indexer.ue8m0<fp16:128+0@p32/i64");
    expect(layoutKey(quantized("fp8_e5m2", 512, 64, { sourceDtype: "fp16" }))).toBe("fp8_e5m2<fp16:512+64/i64");
  });

  it("gives every layout its own key", () => {
    const layouts = everyLayout();
    expect(new Set(layouts.map(layoutKey)).size).toBe(layouts.length);
  });
});

describe("parseLayoutKey", () => {
  it("reads back every layout its key names, for every format, rule, source dtype and loc width", () => {
    const layouts = everyLayout();
    expect(new Set(layouts.map((l) => l.format))).toEqual(new Set(WRITE_FORMATS));
    for (const layout of layouts) expect(parseLayoutKey(layoutKey(layout))).toEqual(layout);
  });

  // [sentence, key]
  const malformed: Array<[string, string]> = [
    ["refuses a key with the wrong separators", "1024-128/i64"],
    ["refuses a copy of no bytes", "0+0/i64"],
    ["refuses a loc width other than 32 or 64 bits", "1024+128/i16"],
    ["refuses a key without a loc width", "1024+128"],
    ["refuses negative and fractional sizes", "-1024+128/i64"],
    ["refuses a fractional size", "1024.5+128/i64"],
    ["refuses sizes of ten digits", "1024+1234567890/i64"],
    ["refuses a leading zero, which would name a layout twice", "01024+128/i64"],
    ["refuses a rope size with a leading zero, which would name a layout twice", "1024+0128/i64"],
    ["refuses a tile-scaled format without its scale rule", "fp8_ds_mla<bf16:512+64/i64"],
    ["refuses a scale rule on a flat fp8 format", "fp8_e4m3.pow2<bf16:512+64/i64"],
    ["refuses a scale rule the format does not take", "fp8_ds_mla.ue8m0<bf16:512+64/i64"],
    ["refuses an unknown scale rule", "fp8_indexer.max<bf16:128+0@p64/i64"],
    ["refuses a paged format without a page size", "fp8_ds_v4.pow2<bf16:448+64/i64"],
    ["refuses a page size on a row format", "fp8_ds_mla.pow2<bf16:512+64@p64/i64"],
    ["refuses a page size of 0", "fp8_indexer.amax<bf16:128+0@p0/i64"],
    ["refuses a source dtype that is not bf16 or fp16", "fp8_e4m3<u8:512+64/i64"],
    ["refuses an unknown format", "fp4<bf16:512+64/i64"],
    ["refuses a quantizing key with a leading zero", "fp8_e4m3<bf16:0512+64/i64"],
    ["refuses a copy key with a source dtype", "bf16:512+64/i64"],
    ["refuses trailing text", "1024+128/i64 "],
    ["refuses the empty string", ""],
  ];
  for (const [sentence, key] of malformed) {
    it(`${sentence}: ${JSON.stringify(key)}`, () => {
      expect(parseLayoutKey(key)).toBeNull();
    });
  }
});

describe("layoutRowBytes", () => {
  it("gives a copy's row its source bytes", () => {
    expect(layoutRowBytes(copyLayout(1024, 128, 8))).toBe(1152);
    expect(layoutRowBytes(copyLayout(0, 128, 4))).toBe(128);
  });

  it("gives flat fp8 one byte an element, ds_mla 656 bytes, and the paged formats a token's row in its page", () => {
    expect(layoutRowBytes(quantized("fp8_e4m3", 512, 64))).toBe(576);
    expect(layoutRowBytes(quantized("fp8_e5m2", 512, 8))).toBe(520);
    expect(layoutRowBytes(quantized("fp8_ds_mla", 512, 64))).toBe(656);
    expect(layoutRowBytes(quantized("fp8_ds_v4", 448, 64))).toBe(576);
    expect(layoutRowBytes(quantized("fp8_indexer", 128, 0))).toBe(128);
  });
});

describe("layoutGeometry", () => {
  it("aligns a copy to its nope and rope sizes, leaving out a part of 0 bytes", () => {
    expect(layoutGeometry(copyLayout(1024, 128, 8))).toEqual({ format: "copy", rowBytes: 1152, alignment: 16 });
    expect(layoutGeometry(copyLayout(1000, 120, 8))).toEqual({ format: "copy", rowBytes: 1120, alignment: 8 });
    expect(layoutGeometry(copyLayout(378, 124, 8)).alignment).toBe(2);
    expect(layoutGeometry(copyLayout(1024, 0, 8)).alignment).toBe(16);
    expect(layoutGeometry(copyLayout(0, 4, 8)).alignment).toBe(4);
  });

  it("aligns a quantizing write to its cache row alone, whatever its sources", () => {
    expect(layoutGeometry(quantized("fp8_e4m3", 512, 64))).toEqual({ format: "fp8_e4m3", rowBytes: 576, alignment: 16 });
    expect(layoutGeometry(quantized("fp8_e4m3", 512, 8))).toEqual({ format: "fp8_e4m3", rowBytes: 520, alignment: 8 });
    expect(layoutGeometry(quantized("fp8_ds_mla", 512, 64))).toEqual({ format: "fp8_ds_mla", rowBytes: 656, alignment: 16 });
    expect(layoutGeometry(quantized("fp8_ds_v4", 448, 64))).toEqual({ format: "fp8_ds_v4", rowBytes: 576, alignment: 16 });
  });
});

describe("copyLayout", () => {
  it("is a copy with no source dtype, page size or scale rule", () => {
    expect(copyLayout(1024, 128, 4)).toEqual({ format: "copy", sourceDtype: null, nopeBytes: 1024, ropeBytes: 128, locBytes: 4, pageSize: 0, scaleRule: null });
  });
});
