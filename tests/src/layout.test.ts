import { describe, expect, it } from "bun:test";
import { planSetMlaKvBuffer, type SetMlaKvBufferPlan } from "../../src/layout.ts";
import { layoutGeometry, layoutKey, parseLayoutKey } from "../../src/layout_key.ts";
import type { DeviceTensor } from "../../src/tensor.ts";
import { fake, fakeAddress } from "../helpers/fake_tensors.ts";
import { thrown } from "../helpers/thrown.ts";

/** A valid DeepSeek-V3-like write: 576-wide bf16 rows (512 nope + 64 rope), n = 4, int64 loc. */
function deepseek(n = 4) {
  return {
    kvBuffer: fake("bf16", [1024, 576]) as DeviceTensor,
    loc: fake("i64", [n]) as DeviceTensor,
    kNope: fake("bf16", [n, 512]) as DeviceTensor,
    kRope: fake("bf16", [n, 64]) as DeviceTensor,
  };
}

function plan(args: ReturnType<typeof deepseek>, options?: { device?: number }): SetMlaKvBufferPlan {
  return planSetMlaKvBuffer(args.kvBuffer, args.loc, args.kNope, args.kRope, options);
}

describe("planSetMlaKvBuffer", () => {
  describe("with valid tensors", () => {
    it("derives every byte count and address of a contiguous bf16 write", () => {
      const args = deepseek(4);
      const p = plan(args);
      expect(p).toEqual({
        device: 0,
        cachePtr: args.kvBuffer.ptr,
        capacity: 1024,
        cacheRowStrideBytes: 1152,
        locPtr: args.loc.ptr,
        locBytes: 8,
        n: 4,
        nopePtr: args.kNope.ptr,
        nopeRowStrideBytes: 1024,
        nopeBytes: 1024,
        ropePtr: args.kRope.ptr,
        ropeRowStrideBytes: 128,
        ropeBytes: 128,
        format: "copy",
        sourceDtype: null,
        nopeElems: 512,
        ropeElems: 64,
        pageSize: 0,
        scaleRule: null,
        rowBytes: 1152,
        alignment: 16,
      });
    });

    it("collapses a paged [pages, pageSize, width] cache into pages * pageSize slots", () => {
      const args = { ...deepseek(), kvBuffer: fake("bf16", [32, 64, 576]) as DeviceTensor };
      const p = plan(args);
      expect(p.capacity).toBe(32 * 64);
      expect(p.cacheRowStrideBytes).toBe(1152);
    });

    it("accepts a [slots, 1, width] cache and ignores the stride of its unit dimension", () => {
      const args = { ...deepseek(), kvBuffer: fake("bf16", [100, 1, 576], { strides: [576, 12345, 1] }) as DeviceTensor };
      expect(plan(args).capacity).toBe(100);
      expect(plan(args).cacheRowStrideBytes).toBe(1152);
    });

    it("uses a padded row stride of the cache, leaving the bytes past the row alone", () => {
      const args = { ...deepseek(), kvBuffer: fake("bf16", [10, 640], { strides: [640, 1] }).narrow(1, 0, 576) as DeviceTensor };
      const p = plan(args);
      expect(p.cacheRowStrideBytes).toBe(1280);
      expect(p.capacity).toBe(10);
    });

    it("reads strided kNope and kRope from the two parts of one wider tensor", () => {
      const kv = fake("bf16", [4, 576]);
      const args = { ...deepseek(4), kNope: kv.narrow(1, 0, 512) as DeviceTensor, kRope: kv.narrow(1, 512, 64) as DeviceTensor };
      const p = plan(args);
      expect(p.nopePtr).toBe(kv.ptr);
      expect(p.ropePtr).toBe(kv.ptr + 1024);
      expect(p.nopeRowStrideBytes).toBe(1152);
      expect(p.ropeRowStrideBytes).toBe(1152);
      expect(p.nopeBytes).toBe(1024);
      expect(p.ropeBytes).toBe(128);
    });

    it("accepts [n, 1, d] sources and an [n, 1] loc", () => {
      const args = {
        ...deepseek(3),
        loc: fake("i32", [3, 1]) as DeviceTensor,
        kNope: fake("bf16", [3, 1, 512]) as DeviceTensor,
        kRope: fake("bf16", [3, 1, 64]) as DeviceTensor,
      };
      const p = plan(args);
      expect(p.n).toBe(3);
      expect(p.locBytes).toBe(4);
      expect(p.nopeRowStrideBytes).toBe(1024);
    });

    it("accepts n = 0 so that the caller can launch nothing", () => {
      const p = plan(deepseek(0));
      expect(p.n).toBe(0);
    });

    it("accepts rows narrower than the cache row, leaving the rest of the row to the caller", () => {
      const args = { ...deepseek(2), kNope: fake("bf16", [2, 256]) as DeviceTensor, kRope: fake("bf16", [2, 32]) as DeviceTensor };
      const p = plan(args);
      expect(p.nopeBytes + p.ropeBytes).toBe(576);
      expect(p.cacheRowStrideBytes).toBe(1152);
    });

    it("accepts an empty rope part, as caches that store no rope need", () => {
      const args = { ...deepseek(2), kRope: fake("bf16", [2, 0]) as DeviceTensor };
      expect(plan(args).ropeBytes).toBe(0);
    });

    it("counts one byte per element for fp8 and u8 caches", () => {
      for (const dtype of ["fp8_e4m3", "fp8_e5m2", "u8"] as const) {
        const p = planSetMlaKvBuffer(fake(dtype, [8, 656]), fake("i64", [2]), fake(dtype, [2, 512]), fake(dtype, [2, 144]));
        expect(p.nopeBytes).toBe(512);
        expect(p.ropeBytes).toBe(144);
        expect(p.cacheRowStrideBytes).toBe(656);
      }
    });

    it("accepts matching options.device", () => {
      const args = {
        kvBuffer: fake("fp16", [16, 576], { device: 1 }) as DeviceTensor,
        loc: fake("i32", [1], { device: 1 }) as DeviceTensor,
        kNope: fake("fp16", [1, 512], { device: 1 }) as DeviceTensor,
        kRope: fake("fp16", [1, 64], { device: 1 }) as DeviceTensor,
      };
      expect(plan(args, { device: 1 }).device).toBe(1);
    });
  });

  describe("with invalid tensors", () => {
    // Each case: a sentence, the arguments (built from a valid write), the argument to blame and a
    // fragment of the message that says what was expected.
    const cases: Array<[string, () => ReturnType<typeof deepseek>, string, string]> = [
      ["refuses a kRope whose dtype differs from the cache's", () => ({ ...deepseek(), kRope: fake("fp16", [4, 64]) as DeviceTensor }), "kRope", "expected dtype bf16 (the cache's dtype), got fp16"],
      ["refuses a kNope whose dtype differs from the cache's", () => ({ ...deepseek(), kNope: fake("fp8_e4m3", [4, 512]) as DeviceTensor }), "kNope", "expected dtype bf16 (the cache's dtype), got fp8_e4m3"],
      ["refuses a cache of a dtype that is not a row dtype", () => ({ ...deepseek(), kvBuffer: fake("i32", [64, 576]) as DeviceTensor }), "kvBuffer", "expected dtype bf16, fp16, u8, fp8_e4m3 or fp8_e5m2, got i32"],
      ["refuses a loc that is not an integer tensor", () => ({ ...deepseek(), loc: fake("bf16", [4]) as DeviceTensor }), "loc", "expected dtype i32 or i64, got bf16"],
      ["refuses a kRope with too many columns to fit after kNope", () => ({ ...deepseek(), kRope: fake("bf16", [4, 128]) as DeviceTensor }), "kRope", "expected at most 64 columns of bf16 to fit the cache row (width 576, of which kNope uses 512), got 128"],
      ["refuses a kNope wider than the cache row", () => ({ ...deepseek(), kNope: fake("bf16", [4, 600]) as DeviceTensor }), "kNope", "expected at most 576 columns of bf16 (the cache row width), got 600"],
      ["refuses a kNope with fewer rows than loc", () => ({ ...deepseek(4), kNope: fake("bf16", [3, 512]) as DeviceTensor }), "kNope", "expected 4 rows (as many as loc), got 3"],
      ["refuses a kRope with more rows than loc", () => ({ ...deepseek(4), kRope: fake("bf16", [5, 64]) as DeviceTensor }), "kRope", "expected 4 rows (as many as loc), got 5"],
      ["refuses a 1-D cache", () => ({ ...deepseek(), kvBuffer: fake("bf16", [576]) as DeviceTensor }), "kvBuffer", "expected at least 2 dimensions"],
      ["refuses a cache whose last dimension is strided", () => ({ ...deepseek(), kvBuffer: fake("bf16", [64, 576], { strides: [1152, 2] }) as DeviceTensor }), "kvBuffer", "expected a contiguous last dimension (stride 1), got strides [1152, 2]"],
      ["refuses a paged cache whose pages do not step uniformly", () => ({ ...deepseek(), kvBuffer: fake("bf16", [8, 16, 576], { strides: [16 * 576 + 64, 576, 1] }) as DeviceTensor }), "kvBuffer", "collapse into slots with one uniform stride"],
      ["refuses a cache whose rows overlap", () => ({ ...deepseek(), kvBuffer: fake("bf16", [64, 576], { strides: [512, 1] }) as DeviceTensor }), "kvBuffer", "expected a row stride of at least the row width 576"],
      ["refuses a cache with no slots", () => ({ ...deepseek(), kvBuffer: fake("bf16", [0, 576]) as DeviceTensor }), "kvBuffer", "expected at least one slot"],
      ["refuses a kNope of rank 1", () => ({ ...deepseek(), kNope: fake("bf16", [512]) as DeviceTensor }), "kNope", "expected shape [n, d] or [n, 1, d], got [512]"],
      ["refuses a 3-D kRope whose middle dimension is not 1", () => ({ ...deepseek(4), kRope: fake("bf16", [4, 2, 32]) as DeviceTensor }), "kRope", "expected shape [n, d] or [n, 1, d], got [4, 2, 32]"],
      ["refuses a kNope whose columns are strided", () => ({ ...deepseek(4), kNope: fake("bf16", [4, 512], { strides: [1024, 2] }) as DeviceTensor }), "kNope", "expected a contiguous last dimension (stride 1)"],
      ["refuses a kRope whose rows overlap", () => ({ ...deepseek(4), kRope: fake("bf16", [4, 64], { strides: [32, 1] }) as DeviceTensor }), "kRope", "expected a row stride of at least 64 elements so that rows do not overlap, got 32"],
      ["refuses a loc that is not a vector", () => ({ ...deepseek(4), loc: fake("i64", [2, 2]) as DeviceTensor }), "loc", "expected shape [n] or [n, 1], got [2, 2]"],
      ["refuses a strided loc", () => ({ ...deepseek(4), loc: fake("i64", [4], { strides: [2] }) as DeviceTensor }), "loc", "expected a contiguous vector (stride 1), got strides [2]"],
      ["refuses a loc that is not aligned to its elements", () => ({ ...deepseek(4), loc: fake("i64", [4], { ptr: fakeAddress(99) + 4 }) as DeviceTensor }), "loc", "expected an address aligned to its 8-byte elements"],
      ["refuses kNope and kRope that are both empty", () => ({ ...deepseek(2), kNope: fake("bf16", [2, 0]) as DeviceTensor, kRope: fake("bf16", [2, 0]) as DeviceTensor }), "kNope", "expected at least one column in kNope or kRope"],
      ["refuses a kRope on another device than the cache", () => ({ ...deepseek(), kRope: fake("bf16", [4, 64], { device: 1 }) as DeviceTensor }), "kRope", "expected a tensor on device 0 (kvBuffer's device), got device 1"],
      ["refuses a loc on another device than the cache", () => ({ ...deepseek(), loc: fake("i64", [4], { device: 2 }) as DeviceTensor }), "loc", "expected a tensor on device 0 (kvBuffer's device), got device 2"],
      ["refuses a kvBuffer that is not a DeviceTensor", () => ({ ...deepseek(), kvBuffer: new Uint16Array(4) as unknown as DeviceTensor }), "kvBuffer", "expected a DeviceTensor, got a Uint16Array"],
      ["refuses a missing kNope", () => ({ ...deepseek(), kNope: undefined as unknown as DeviceTensor }), "kNope", "expected a DeviceTensor, got undefined"],
    ];

    for (const [sentence, build, argument, fragment] of cases) {
      it(sentence, () => {
        const error = thrown(() => plan(build()));
        expect(error.code).toBe("INVALID_ARGUMENT");
        expect(error.argument).toBe(argument);
        expect(error.message).toStartWith(`${argument}: `);
        expect(error.message).toContain(fragment);
      });
    }

    it("refuses a cache on another device than options.device", () => {
      const error = thrown(() => plan(deepseek(), { device: 3 }));
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe("kvBuffer");
      expect(error.message).toContain("expected a tensor on device 3 (options.device), got device 0");
    });

    it("refuses a negative options.device", () => {
      const error = thrown(() => plan(deepseek(), { device: -1 }));
      expect(error.argument).toBe("options.device");
    });

    it("refuses a freed source with DISPOSED, naming it", () => {
      const args = deepseek();
      args.kRope.free();
      const error = thrown(() => plan(args));
      expect(error.code).toBe("DISPOSED");
      expect(error.argument).toBe("kRope");
    });
  });

  describe("alignment", () => {
    it("is 16 when every address, row stride and row size is a multiple of 16 bytes", () => {
      expect(plan(deepseek()).alignment).toBe(16);
    });

    it("is 8 for a rope row of 8 bytes (4 bf16 columns)", () => {
      const args = { ...deepseek(2), kRope: fake("bf16", [2, 4]) as DeviceTensor };
      expect(plan(args).alignment).toBe(8);
    });

    it("is 8 for a source that starts 8 bytes into an allocation of 1160-byte rows", () => {
      const wide = fake("bf16", [4, 580]);
      const args = { ...deepseek(4), kNope: wide.narrow(1, 4, 512) as DeviceTensor };
      expect(plan(args).alignment).toBe(8);
    });

    it("is 2 for a source 2 bytes into its allocation", () => {
      const args = { ...deepseek(4), kRope: fake("bf16", [4, 64], { ptr: fakeAddress(70) + 2 }) as DeviceTensor };
      expect(plan(args).alignment).toBe(2);
    });

    it("is 8 for a cache whose row stride is 1160 bytes", () => {
      const args = { ...deepseek(), kvBuffer: fake("bf16", [64, 580]) as DeviceTensor };
      expect(plan(args).alignment).toBe(8);
    });

    it("is 4 for a cache that starts 4 bytes into its allocation", () => {
      const args = { ...deepseek(), kvBuffer: fake("bf16", [64, 576], { ptr: fakeAddress(71) + 4 }) as DeviceTensor };
      expect(plan(args).alignment).toBe(4);
    });

    it("ignores the alignment of loc beyond its element size, as the library does", () => {
      const args = { ...deepseek(4), loc: fake("i32", [4], { ptr: fakeAddress(77) + 4 }) as DeviceTensor };
      expect(plan(args).alignment).toBe(16);
    });

    it("ignores the address and stride of an empty rope part", () => {
      const args = { ...deepseek(4), kRope: fake("bf16", [4, 0], { ptr: fakeAddress(78) + 2 }) as DeviceTensor };
      expect(plan(args).alignment).toBe(16);
    });

    it("is 16 for an fp8 656-byte row split 512 + 144", () => {
      const p = planSetMlaKvBuffer(fake("fp8_e4m3", [8, 656]), fake("i64", [2]), fake("fp8_e4m3", [2, 512]), fake("fp8_e4m3", [2, 144]));
      expect(p.alignment).toBe(16);
    });
  });

  describe("as a layout", () => {
    it("names the layout its dispatch table is keyed by", () => {
      expect(layoutKey(plan(deepseek()))).toBe("1024+128/i64");
      const i32 = { ...deepseek(3), loc: fake("i32", [3]) as DeviceTensor };
      expect(layoutKey(plan(i32))).toBe("1024+128/i32");
    });

    it("has, for contiguous aligned buffers, the geometry its layout's key implies (what the tuner times)", () => {
      const p = plan(deepseek());
      expect({ format: p.format, rowBytes: p.rowBytes, alignment: p.alignment }).toEqual(layoutGeometry(parseLayoutKey(layoutKey(p))!));
    });
  });
});

describe("planSetMlaKvBuffer for quantizing writes", () => {
  const sources = (dtype: "bf16" | "fp16" = "bf16", n = 4, nope = 512, rope = 64) =>
    ({ loc: fake("i32", [n]) as DeviceTensor, kNope: fake(dtype, [n, nope]) as DeviceTensor, kRope: fake(dtype, [n, rope]) as DeviceTensor });

  it("quantizes bf16 sources into an fp8_e4m3 cache without being asked, one byte an element", () => {
    const s = sources();
    const p = planSetMlaKvBuffer(fake("fp8_e4m3", [64, 16, 576]), s.loc, s.kNope, s.kRope);
    expect(p).toMatchObject({ format: "fp8_e4m3", sourceDtype: "bf16", nopeElems: 512, ropeElems: 64, rowBytes: 576, nopeBytes: 1024, nopeRowStrideBytes: 1024, cacheRowStrideBytes: 576, pageSize: 0, scaleRule: null, alignment: 16 });
  });

  it("names the fp8 kind after the cache's dtype (e5m2) and reads fp16 sources", () => {
    const s = sources("fp16");
    expect(planSetMlaKvBuffer(fake("fp8_e5m2", [8, 576]), s.loc, s.kNope, s.kRope).format).toBe("fp8_e5m2");
  });

  it("writes the ds_mla layout into a u8 cache of 656-byte rows when asked", () => {
    const s = sources("fp16");
    const p = planSetMlaKvBuffer(fake("u8", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" });
    expect(p).toMatchObject({ format: "fp8_ds_mla", sourceDtype: "fp16", rowBytes: 656, alignment: 16, scaleRule: "pow2", pageSize: 0 });
    expect(layoutKey(p)).toBe("fp8_ds_mla.pow2<fp16:512+64/i32");
  });

  it("aligns a quantizing write to its cache side alone: its sources are read into registers", () => {
    const wide = fake("bf16", [4, 580]);
    const p = planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), fake("i32", [4]), wide.narrow(1, 0, 512), wide.narrow(1, 516, 64));
    expect(p.alignment).toBe(16);
  });

  it("aligns a quantizing write of 520-byte cache rows to 8", () => {
    const s = sources("bf16", 4, 512, 8);
    const p = planSetMlaKvBuffer(fake("fp8_e4m3", [8, 520]), s.loc, s.kNope, s.kRope);
    expect(p.alignment).toBe(8);
  });

  const bad: Array<[string, () => SetMlaKvBufferPlan, string, string]> = [
    ["refuses ds_mla rows whose nope part is not 512 elements", () => { const s = sources("bf16", 4, 448, 64); return planSetMlaKvBuffer(fake("u8", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" }); },
      "kNope", "a fp8_ds_mla write needs shapes it converts in one pass: the fp8_ds_mla nope part has 512 elements, got 448"],
    ["refuses ds_mla rows whose rope part is not 64 elements", () => { const s = sources("bf16", 4, 512, 32); return planSetMlaKvBuffer(fake("u8", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" }); },
      "kRope", "the fp8_ds_mla rope part has 64 elements, got 32"],
    ["refuses a ds_mla cache narrower than 656 bytes", () => { const s = sources(); return planSetMlaKvBuffer(fake("u8", [8, 640]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" }); },
      "kvBuffer", "expected rows of at least 656 bytes for a fp8_ds_mla write of 512 + 64 elements, got 640"],
    ["refuses a ds_mla write into a bf16 cache", () => { const s = sources(); return planSetMlaKvBuffer(fake("bf16", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" }); },
      "kvBuffer", "expected dtype u8 or fp8_e4m3 for the fp8_ds_mla format"],
    ["refuses ds_mla from u8 sources", () => { const s = { loc: fake("i32", [4]), kNope: fake("u8", [4, 512]), kRope: fake("u8", [4, 64]) }; return planSetMlaKvBuffer(fake("u8", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" }); },
      "kNope", "expected dtype bf16 or fp16 (a fp8_ds_mla write quantizes them), got u8"],
    ["refuses flat fp8 into a u8 cache, which does not say which fp8", () => { const s = sources(); return planSetMlaKvBuffer(fake("u8", [8, 576]), s.loc, s.kNope, s.kRope, { format: "fp8" }); },
      "kvBuffer", "expected dtype fp8_e4m3 or fp8_e5m2 for the fp8 format"],
    ["refuses a flat fp8 nope part that is not a multiple of 16 elements", () => { const s = sources("bf16", 4, 504, 64); return planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), s.loc, s.kNope, s.kRope); },
      "kNope", "a fp8_e4m3 write needs shapes it converts in one pass: the nope part must be a multiple of 16 elements up to 1024, got 504"],
    ["refuses a flat fp8 rope part of an odd number of elements", () => { const s = sources("bf16", 4, 512, 63); return planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), s.loc, s.kNope, s.kRope); },
      "kRope", "the rope part must be a multiple of 2 elements up to 128, got 63"],
    ["refuses a flat fp8 nope part over 1024 elements", () => { const s = sources("bf16", 4, 1040, 64); return planSetMlaKvBuffer(fake("fp8_e4m3", [8, 1104]), s.loc, s.kNope, s.kRope); },
      "kNope", "got 1040"],
    ["refuses bf16 kNope with fp16 kRope", () => { const s = sources(); return planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), s.loc, s.kNope, fake("fp16", [4, 64])); },
      "kRope", "expected dtype bf16 (kNope's dtype), got fp16"],
    ["refuses sources at an odd address", () => planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), fake("i32", [4]), fake("bf16", [4, 512], { ptr: fakeAddress(900) + 1 }), fake("bf16", [4, 64])),
      "kNope", "expected an address aligned to its 2-byte elements"],
  ];
  for (const [sentence, plan, argument, fragment] of bad) {
    it(sentence, () => {
      const error = thrown(plan);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe(argument);
      expect(error.message).toContain(fragment);
    });
  }

  it("still copies bytes when the cache and sources share an fp8 dtype", () => {
    const p = planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), fake("i32", [2]), fake("fp8_e4m3", [2, 512]), fake("fp8_e4m3", [2, 64]));
    expect(p.format).toBe("copy");
  });
});

describe("planSetMlaKvBuffer for the paged formats and scale rules", () => {
  const v4Sources = (n = 3, dtype: "bf16" | "fp16" = "bf16") =>
    ({ loc: fake("i64", [n]) as DeviceTensor, kNope: fake(dtype, [n, 448]) as DeviceTensor, kRope: fake(dtype, [n, 64]) as DeviceTensor });
  const indexerSources = (n = 3) => ({ loc: fake("i32", [n]) as DeviceTensor, kNope: fake("bf16", [n, 128]) as DeviceTensor });

  it("reads a DeepSeek V4 cache of [pages, pageBytes] bytes as pages of pageSize slots", () => {
    const s = v4Sources();
    const cache = fake("u8", [4, 37440]);
    const p = planSetMlaKvBuffer(cache, s.loc, s.kNope, s.kRope, { format: "fp8_ds_v4", pageSize: 64 });
    expect(p).toMatchObject({
      format: "fp8_ds_v4",
      sourceDtype: "bf16",
      capacity: 4 * 64,
      cacheRowStrideBytes: 37440,
      pageSize: 64,
      scaleRule: "pow2",
      nopeElems: 448,
      ropeElems: 64,
      rowBytes: 576,
      alignment: 16,
    });
    expect(layoutKey(p)).toBe("fp8_ds_v4.pow2<bf16:448+64@p64/i64");
  });

  it("refuses V4 pages smaller than pageSize tokens with their scale words, padded to 576 bytes", () => {
    const s = v4Sources();
    const error = thrown(() => planSetMlaKvBuffer(fake("u8", [4, 37439]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_v4", pageSize: 64 }));
    expect(error.argument).toBe("kvBuffer");
    expect(error.message).toContain("expected pages of at least 37440 bytes for 64 fp8_ds_v4 tokens (shape [pages, pageBytes]), got 37439");
  });

  it("writes the indexer's paged K cache from kNope alone, with the amax rule unless ue8m0 is asked for", () => {
    const s = indexerSources();
    const p = planSetMlaKvBuffer(fake("u8", [2, 8448]), s.loc, s.kNope, undefined, { format: "fp8_indexer", pageSize: 64 });
    expect(p).toMatchObject({ format: "fp8_indexer", capacity: 128, pageSize: 64, scaleRule: "amax", nopeElems: 128, ropeElems: 0, ropeBytes: 0, ropePtr: 0, rowBytes: 128 });
    expect(layoutKey(p)).toBe("fp8_indexer.amax<bf16:128+0@p64/i32");
    const ue8m0 = planSetMlaKvBuffer(fake("u8", [2, 8448]), s.loc, s.kNope, undefined, { format: "fp8_indexer", pageSize: 64, scaleRule: "ue8m0" });
    expect(ue8m0.scaleRule).toBe("ue8m0");
  });

  it("takes the amax rule for ds_mla when asked, pow2 otherwise", () => {
    const s = { loc: fake("i32", [2]), kNope: fake("bf16", [2, 512]), kRope: fake("bf16", [2, 64]) };
    expect(planSetMlaKvBuffer(fake("u8", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla" }).scaleRule).toBe("pow2");
    expect(planSetMlaKvBuffer(fake("u8", [8, 656]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_mla", scaleRule: "amax" }).scaleRule).toBe("amax");
  });

  const bad: Array<[string, () => SetMlaKvBufferPlan, string, string]> = [
    ["refuses a paged format without a page size", () => { const s = v4Sources(); return planSetMlaKvBuffer(fake("u8", [4, 37440]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_v4" }); },
      "options.pageSize", "a fp8_ds_v4 cache is made of pages; pass the tokens a page (e.g. 64)"],
    ["refuses a page size for a row format", () => planSetMlaKvBuffer(fake("u8", [8, 656]), fake("i32", [2]), fake("bf16", [2, 512]), fake("bf16", [2, 64]), { format: "fp8_ds_mla", pageSize: 64 }),
      "options.pageSize", "only the paged formats (fp8_ds_v4, fp8_indexer) take a page size; this write is fp8_ds_mla"],
    ["refuses a page size for a copy", () => plan(deepseek(), { pageSize: 16 } as never),
      "options.pageSize", "this write is copy"],
    ["refuses a scale rule for a copy", () => plan(deepseek(), { scaleRule: "amax" } as never),
      "options.scaleRule", "only the tile-scaled formats (fp8_ds_mla, fp8_ds_v4, fp8_indexer) take a scale rule; this write is copy"],
    ["refuses a scale rule for flat fp8", () => planSetMlaKvBuffer(fake("fp8_e4m3", [8, 576]), fake("i32", [2]), fake("bf16", [2, 512]), fake("bf16", [2, 64]), { scaleRule: "pow2" }),
      "options.scaleRule", "this write is fp8_e4m3"],
    ["refuses a scale rule the format does not take", () => { const s = indexerSources(); return planSetMlaKvBuffer(fake("u8", [2, 8448]), s.loc, s.kNope, undefined, { format: "fp8_indexer", pageSize: 64, scaleRule: "pow2" }); },
      "options.scaleRule", 'a fp8_indexer write takes scale rule "amax" or "ue8m0", got "pow2"'],
    ["refuses the amax rule for V4, whose only rule is pow2", () => { const s = v4Sources(); return planSetMlaKvBuffer(fake("u8", [4, 37440]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_v4", pageSize: 64, scaleRule: "amax" }); },
      "options.scaleRule", 'a fp8_ds_v4 write takes scale rule "pow2", got "amax"'],
    ["refuses an omitted kRope for every format but the indexer's", () => planSetMlaKvBuffer(fake("bf16", [8, 576]), fake("i32", [2]), fake("bf16", [2, 512]), undefined),
      "kRope", "expected a DeviceTensor (only the fp8_indexer format has no rope part), got undefined"],
    ["refuses a rope part for the indexer", () => { const s = indexerSources(2); return planSetMlaKvBuffer(fake("u8", [2, 8448]), s.loc, s.kNope, fake("bf16", [2, 64]), { format: "fp8_indexer", pageSize: 64 }); },
      "kRope", "the fp8_indexer rope part has 0 elements, got 64"],
    ["refuses V4 sources of the V3.2 row", () => { const s = { loc: fake("i64", [2]), kNope: fake("bf16", [2, 512]), kRope: fake("bf16", [2, 64]) }; return planSetMlaKvBuffer(fake("u8", [4, 37440]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_v4", pageSize: 64 }); },
      "kNope", "the fp8_ds_v4 nope part has 448 elements, got 512"],
    ["refuses a V4 cache of bf16", () => { const s = v4Sources(); return planSetMlaKvBuffer(fake("bf16", [4, 18720]), s.loc, s.kNope, s.kRope, { format: "fp8_ds_v4", pageSize: 64 }); },
      "kvBuffer", "expected dtype u8 or fp8_e4m3 for the fp8_ds_v4 format (rows of mixed content), got bf16"],
  ];
  for (const [sentence, make, argument, fragment] of bad) {
    it(sentence, () => {
      const error = thrown(make);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.argument).toBe(argument);
      expect(error.message).toContain(fragment);
    });
  }
});
