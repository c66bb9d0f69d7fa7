import { describe, expect, it } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_ROW_BYTES, autotune, checkLayoutSpec, layoutOfSpec, parseLayoutSpec, specName, type LayoutSpec } from "../../autotune/autotune.ts";
import { builtinTable } from "../../src/dispatch.ts";
import { copyLayout, layoutKey, parseLayoutKey } from "../../src/layout_key.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { thrown } from "../helpers/thrown.ts";
import { FAKE_VECTOR_US_AT_1, fakeLayoutProfile } from "./fixtures/fake.ts";

describe("parseLayoutSpec", () => {
  const good: Array<[string, LayoutSpec]> = [
    ["bf16:512+64", { dtype: "bf16", nope: 512, rope: 64 }],
    ["u8:528+128", { dtype: "u8", nope: 528, rope: 128 }],
    ["fp8_e4m3:656+0", { dtype: "fp8_e4m3", nope: 656, rope: 0 }],
    ["bf16:512+64:fp8_ds_mla", { dtype: "bf16", nope: 512, rope: 64, format: "fp8_ds_mla" }],
    ["bf16:512+64:fp8_ds_mla.amax", { dtype: "bf16", nope: 512, rope: 64, format: "fp8_ds_mla", scaleRule: "amax" }],
    ["bf16:448+64:fp8_ds_v4@64", { dtype: "bf16", nope: 448, rope: 64, format: "fp8_ds_v4", pageSize: 64 }],
    ["fp16:128+0:fp8_indexer.ue8m0@32", { dtype: "fp16", nope: 128, rope: 0, format: "fp8_indexer", scaleRule: "ue8m0", pageSize: 32 }],
    ["fp16:512+64:fp8_e5m2", { dtype: "fp16", nope: 512, rope: 64, format: "fp8_e5m2" }],
  ];
  for (const [spec, parsed] of good) {
    it(`reads ${spec}, and names it back the same way`, () => {
      expect(parseLayoutSpec(spec)).toEqual(parsed);
      expect(specName(parsed)).toBe(spec);
    });
  }

  // [sentence, spec, a fragment of the one-sentence reason]
  const bad: Array<[string, string, string]> = [
    ["refuses a spec that is not dtype:nope+rope", "bf16-512-64", 'is not dtype:nope+rope[:format[.rule][@pageSize]], e.g. bf16:512+64 or bf16:448+64:fp8_ds_v4@64'],
    ["refuses an unknown dtype", "f32:512+64", "dtype f32 is not one of bf16, fp16, u8, fp8_e4m3, fp8_e5m2"],
    ["refuses a row of no elements", "bf16:0+0", "nope and rope are element counts >= 0 with a positive sum"],
    ["refuses a scale rule without a format", "bf16:512+64:.amax", "is not dtype:nope+rope"],
    ["refuses an unknown format", "bf16:512+64:fp4", "format fp4 is not one of fp8_e4m3, fp8_e5m2, fp8_ds_mla, fp8_ds_v4, fp8_indexer"],
    ["refuses a quantizing format of u8 sources", "u8:512+64:fp8_ds_mla", "a fp8_ds_mla write quantizes bf16 or fp16 sources, not u8"],
    ["refuses a shape the format cannot take", "bf16:448+64:fp8_ds_mla", "the fp8_ds_mla nope part has 512 elements, got 448"],
    ["refuses a flat fp8 shape it cannot convert in one pass", "bf16:500+64:fp8_e4m3", "the nope part must be a multiple of 16 elements up to 1024, got 500"],
    ["refuses a scale rule the format does not take", "bf16:512+64:fp8_ds_mla.ue8m0", "fp8_ds_mla takes scale rule pow2 or amax, not ue8m0"],
    ["refuses a scale rule on a flat fp8 format", "bf16:512+64:fp8_e4m3.pow2", "fp8_e4m3 takes no scale rule, not pow2"],
    ["refuses a paged format without a page size", "bf16:448+64:fp8_ds_v4", "a fp8_ds_v4 cache is paged; add @pageSize"],
    ["refuses a page size on a row format", "bf16:512+64:fp8_ds_mla@64", "fp8_ds_mla is not paged; it takes no page size"],
    ["refuses a page size of 0", "bf16:128+0:fp8_indexer@0", "the page size is a whole number >= 1"],
    ["refuses a row larger than the tuner times", `bf16:${MAX_ROW_BYTES / 2}+1`, `a row of ${MAX_ROW_BYTES + 2} bytes is more than the ${MAX_ROW_BYTES} the tuner times`],
  ];
  for (const [sentence, spec, fragment] of bad) {
    it(`${sentence}: ${spec}`, () => {
      let message = "";
      try {
        parseLayoutSpec(spec);
      } catch (error) {
        expect(error).toBeInstanceOf(RangeError);
        message = (error as Error).message;
      }
      expect(message).toContain(fragment);
      expect(message).toStartWith(JSON.stringify(spec));
    });
  }
});

describe("checkLayoutSpec", () => {
  it("names what it checks in its message", () => {
    expect(() => checkLayoutSpec({ dtype: "bf16", nope: -1, rope: 64 }, "options.layouts[2]")).toThrow("options.layouts[2]: nope and rope are element counts");
  });

  it("refuses a page size on a copy", () => {
    expect(() => checkLayoutSpec({ dtype: "bf16", nope: 512, rope: 64, pageSize: 64 })).toThrow("layout: a copy takes no scale rule or page size");
  });

  it("returns a good spec as it is", () => {
    const spec: LayoutSpec = { dtype: "fp16", nope: 448, rope: 64, format: "fp8_ds_v4", pageSize: 16 };
    expect(checkLayoutSpec(spec)).toBe(spec);
  });
});

describe("layoutOfSpec", () => {
  it("turns a copy spec into its bytes, for each loc width", () => {
    expect(layoutOfSpec({ dtype: "bf16", nope: 512, rope: 64 }, 8)).toEqual(copyLayout(1024, 128, 8));
    expect(layoutOfSpec({ dtype: "u8", nope: 528, rope: 128 }, 4)).toEqual(copyLayout(528, 128, 4));
  });

  it("gives a quantizing spec its source dtype and the format's default scale rule unless one is named", () => {
    expect(layoutKey(layoutOfSpec(parseLayoutSpec("bf16:512+64:fp8_ds_mla"), 8))).toBe("fp8_ds_mla.pow2<bf16:512+64/i64");
    expect(layoutKey(layoutOfSpec(parseLayoutSpec("fp16:128+0:fp8_indexer@64"), 4))).toBe("fp8_indexer.amax<fp16:128+0@p64/i32");
    expect(layoutKey(layoutOfSpec(parseLayoutSpec("bf16:448+64:fp8_ds_v4@64"), 8))).toBe("fp8_ds_v4.pow2<bf16:448+64@p64/i64");
    expect(layoutKey(layoutOfSpec(parseLayoutSpec("fp16:512+64:fp8_e4m3"), 8))).toBe("fp8_e4m3<fp16:512+64/i64");
  });

  it("names layouts whose keys read back to them", () => {
    for (const spec of ["bf16:512+64", "u8:528+128", "bf16:512+64:fp8_ds_mla.amax", "bf16:448+64:fp8_ds_v4@64", "fp16:128+0:fp8_indexer.ue8m0@32", "fp16:512+64:fp8_e5m2"]) {
      for (const loc of [4, 8] as const) {
        const layout = layoutOfSpec(parseLayoutSpec(spec), loc);
        expect(parseLayoutKey(layoutKey(layout))).toEqual(layout);
      }
    }
  });
});

describe("autotune options", () => {
  it("refuses a bad layout with INVALID_ARGUMENT naming options.layouts, before touching the GPU", () => {
    const error = thrown(() => autotune({ layouts: ["bf16:512+64", "bf16:448+64:fp8_ds_mla"] }));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.argument).toBe("options.layouts");
    expect(error.message).toContain("the fp8_ds_mla nope part has 512 elements, got 448");
  });

  it("names the index of a bad layout given as an object", () => {
    const error = thrown(() => autotune({ layouts: ["bf16:512+64", { dtype: "bf16", nope: 0, rope: 0 }] }));
    expect(error.message).toContain("options.layouts[1]: nope and rope are element counts");
  });

  it("refuses a loc that is not i32, i64 or both", () => {
    const error = thrown(() => autotune({ layouts: ["bf16:512+64"], loc: "i16" as never }));
    expect([error.code, error.argument]).toEqual(["INVALID_ARGUMENT", "options.loc"]);
    expect(error.message).toContain('expected "i32", "i64" or "both", got i16');
  });

  it("refuses a device that is not an index", () => {
    expect(thrown(() => autotune({ device: -1, layouts: ["bf16:512+64"] })).argument).toBe("options.device");
  });
});

const host = hostLibrary();
describe.skipIf(!host)(`autotune() against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  // First-use tuning is off, so only autotune() itself may tune.
  const env = () => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", MLA_KV_CACHE_DIR: mkdtempSync(join(tmpdir(), "mla-kv-autotune-")) });
  const storeFake = `
    const { storeProfile } = await import(root + "/tests/autotune/fixtures/stored_profile.ts");
    const { fakeLayoutProfile } = await import(root + "/tests/autotune/fixtures/fake.ts");
    const store = (layouts) => storeProfile(m.deviceInfo(0).index, layouts);
  `;

  it("answers from the stored profile without tuning, once per layout and loc dtype asked for", () => {
    const result = runInChild(`${storeFake}
      store({ "1024+128/i32": fakeLayoutProfile(2), "1024+128/i64": fakeLayoutProfile(3) });
      const out = m.autotune({ layouts: ["bf16:512+64", { dtype: "bf16", nope: 512, rope: 64 }] });
      return out.map((o) => ({ key: o.layoutKey, source: o.source, us: o.profile.buckets[0].ranked.find((c) => c.path === "vector").us }));
    `, env());
    expect(result.value, describeChild(result)).toEqual([
      { key: "1024+128/i32", source: "user", us: 2 * FAKE_VECTOR_US_AT_1 },
      { key: "1024+128/i64", source: "user", us: 3 * FAKE_VECTOR_US_AT_1 },
    ]);
  });

  it("drops the dispatch tables handed out before it, so later writes use what it found", () => {
    const result = runInChild(`${storeFake}
      const { tableFor } = await import(root + "/src/dispatch_tables.ts");
      const { copyLayout } = await import(root + "/src/layout_key.ts");
      const before = tableFor(0, copyLayout(1024, 128, 8))[16];
      store({ "1024+128/i64": fakeLayoutProfile(3) });
      const cached = tableFor(0, copyLayout(1024, 128, 8))[16];
      m.autotune({ layouts: ["bf16:512+64"], loc: "i64" });
      const after = tableFor(0, copyLayout(1024, 128, 8))[16];
      return { before, cached, after };
    `, env());
    const builtin = builtinTable()[16];
    const profiled = fakeLayoutProfile(3).buckets[16]!.ranked.map(({ us: _us, ...launch }) => launch);
    expect(profiled).not.toEqual(builtin);
    expect(result.value, describeChild(result)).toEqual({ before: builtin, cached: builtin, after: profiled });
  });

  it("tunes with force on the device for real, stores a valid profile and answers from memory after", () => {
    // 2-byte rows: only the vector path can take them, and the scratch set is small.
    const result = runInChild(`
      const { readProfileFile } = await import(root + "/autotune/store.ts");
      const { gpuIdentity } = await import(root + "/autotune/identity.ts");
      const progress = [];
      const [tuned] = m.autotune({ layouts: ["u8:1+1"], loc: "i32", force: true, onProgress: (p) => progress.push(p.done) });
      const [again] = m.autotune({ layouts: ["u8:1+1"], loc: "i32" });
      const file = readProfileFile(tuned.path, gpuIdentity(0));
      return {
        key: tuned.layoutKey,
        source: tuned.source,
        persisted: tuned.persisted,
        buckets: tuned.profile.buckets.length,
        paths: [...new Set(tuned.profile.buckets.flatMap((b) => b.ranked.map((c) => c.path)))],
        pdl: tuned.profile.pdl,
        progress: progress.length,
        again: again.source,
        stored: file.ok && JSON.stringify(file.profile.layouts["1+1/i32"]) === JSON.stringify(tuned.profile),
      };
    `, env());
    expect(result.value, describeChild(result)).toEqual({
      key: "1+1/i32",
      source: "tuned",
      persisted: true,
      buckets: 17,
      paths: ["vector"],
      pdl: true,
      progress: 17,
      again: "memory",
      stored: true,
    });
  });
});
