import { describe, expect, it } from "bun:test";
import {
  LayoutKeySchema,
  LayoutProfileSchema,
  ProfileSchema,
  SCHEMA_VERSION,
  bucketOf,
  choiceFor,
  computeCrossoverN,
  identityKey,
  identityMismatch,
  makeProfile,
  parseLayoutKey,
  type GpuIdentity,
  type Profile,
} from "../../autotune/profile.ts";
import { layoutKey } from "../../src/dispatch.ts";
import { fakeLayoutProfile, h100 } from "./fixtures/fake.ts";

function profile(): Profile {
  return makeProfile(h100(), { "1024+128/i64": fakeLayoutProfile(), "656+0/i32": fakeLayoutProfile(2, 5) });
}

function issuesOf(value: unknown): string {
  const r = ProfileSchema.safeParse(value);
  return r.success ? "" : JSON.stringify(r.error.issues);
}

describe("profile schema", () => {
  it("round-trips a profile through JSON unchanged", () => {
    const p = profile();
    const back = ProfileSchema.parse(JSON.parse(JSON.stringify(p)));
    expect(back).toEqual(p);
    expect(back.schemaVersion).toBe(SCHEMA_VERSION);
    expect(Object.keys(back.layouts).sort()).toEqual(["1024+128/i64", "656+0/i32"]);
  });

  it("rejects buckets that do not start at 0", () => {
    const lp = fakeLayoutProfile();
    lp.buckets.shift();
    expect(LayoutProfileSchema.safeParse(lp).success).toBe(false);
  });

  it("rejects unsorted, duplicated and gapped buckets", () => {
    const swapped = fakeLayoutProfile();
    [swapped.buckets[3], swapped.buckets[4]] = [swapped.buckets[4]!, swapped.buckets[3]!];
    const duplicated = fakeLayoutProfile();
    duplicated.buckets.splice(5, 0, duplicated.buckets[5]!);
    const gapped = fakeLayoutProfile();
    gapped.buckets.splice(7, 1);
    for (const lp of [swapped, duplicated, gapped]) {
      expect(LayoutProfileSchema.safeParse(lp).success).toBe(false);
    }
    expect(LayoutProfileSchema.safeParse(fakeLayoutProfile()).success).toBe(true);
  });

  it("rejects an empty bucket list", () => {
    expect(LayoutProfileSchema.safeParse({ ...fakeLayoutProfile(), buckets: [] }).success).toBe(false);
  });

  it("rejects a bucket whose n is not 2^bucket", () => {
    const lp = fakeLayoutProfile();
    lp.buckets[4]!.n = 15;
    expect(JSON.stringify(LayoutProfileSchema.safeParse(lp).error?.issues)).toContain("2^bucket");
  });

  it("rejects a best that is slower than bestVector", () => {
    const lp = fakeLayoutProfile();
    const b = lp.buckets[0]!;
    b.best = { ...b.bestVector, us: b.bestVector.us + 1 };
    expect(JSON.stringify(LayoutProfileSchema.safeParse(lp).error?.issues)).toContain("slower than bestVector");
  });

  it("rejects a best that is neither measured winner", () => {
    const lp = fakeLayoutProfile();
    const b = lp.buckets[2]!;
    b.best = { ...b.bestVector, warps: 16 };
    expect(LayoutProfileSchema.safeParse(lp).success).toBe(false);
  });

  it("rejects a bestVector on the tma path and a bestTma on the vector path", () => {
    const a = fakeLayoutProfile();
    a.buckets[1]!.bestVector.path = "tma";
    const b = fakeLayoutProfile();
    b.buckets[1]!.bestTma!.path = "vector";
    expect(LayoutProfileSchema.safeParse(a).success).toBe(false);
    expect(LayoutProfileSchema.safeParse(b).success).toBe(false);
  });

  it("accepts a bucket with no TMA measurement", () => {
    const lp = fakeLayoutProfile(1, 3);
    for (const b of lp.buckets) {
      b.bestTma = null;
      b.best = { ...b.bestVector };
    }
    lp.crossoverN = null;
    expect(LayoutProfileSchema.safeParse(lp).success).toBe(true);
  });

  it("rejects launch configs outside the tuned space", () => {
    const lp = fakeLayoutProfile();
    (lp.buckets[0]!.bestVector as { warps: number }).warps = 3;
    expect(LayoutProfileSchema.safeParse(lp).success).toBe(false);
    const lp2 = fakeLayoutProfile();
    (lp2.buckets[0]!.bestVector as { rowsPerWarp: number }).rowsPerWarp = 8;
    expect(LayoutProfileSchema.safeParse(lp2).success).toBe(false);
  });

  it("rejects unknown keys, bad layout keys, bad dates and other schema versions", () => {
    const p = profile();
    expect(issuesOf({ ...p, extra: 1 })).toContain("extra");
    expect(issuesOf({ ...p, layouts: { "1024-128-i64": fakeLayoutProfile() } })).toContain("layout key");
    expect(issuesOf({ ...p, createdAt: "yesterday" })).not.toBe("");
    expect(issuesOf({ ...p, schemaVersion: 2 })).not.toBe("");
    expect(issuesOf({ ...p, layouts: { "1024+128/i64": { ...fakeLayoutProfile(), tuneMs: -1 } } })).not.toBe("");
    expect(issuesOf(p)).toBe("");
  });

  it("never lets a JSON __proto__ layout key reach an object's prototype", () => {
    const text = JSON.stringify(profile()).replace('"layouts":{', '"layouts":{"__proto__":{"x":1},');
    const parsed = ProfileSchema.parse(JSON.parse(text));
    expect(Object.getPrototypeOf(parsed.layouts)).toBe(Object.prototype);
    expect(Object.hasOwn(parsed.layouts, "__proto__")).toBe(false);
    expect((parsed.layouts as Record<string, unknown>).x).toBeUndefined();
    expect(Object.keys(parsed.layouts).sort()).toEqual(["1024+128/i64", "656+0/i32"]);
    expect(ProfileSchema.safeParse(JSON.parse(JSON.stringify(profile()).replace("{", '{"__proto__":1,'))).success).toBe(false);
  });
});

describe("layout keys and buckets", () => {
  it("parses the layout keys dispatch builds, for copies and quantizing writes", () => {
    for (const input of [
      { nopeBytes: 1024, ropeBytes: 128, locBytes: 8 },
      { nopeBytes: 656, ropeBytes: 0, locBytes: 4 },
      { nopeBytes: 1024, ropeBytes: 128, locBytes: 8, format: "fp8_ds_mla", sourceDtype: "bf16" },
      { nopeBytes: 1024, ropeBytes: 128, locBytes: 4, format: "fp8_e5m2", sourceDtype: "fp16" },
    ] as const) {
      expect(LayoutKeySchema.safeParse(layoutKey(input)).success).toBe(true);
    }
    expect(parseLayoutKey("656+0/i32")).toEqual({ format: null, sourceDtype: null, nope: 656, rope: 0, locDtype: "i32" });
    expect(parseLayoutKey("fp8_ds_mla<bf16:512+64/i64")).toEqual({ format: "fp8_ds_mla", sourceDtype: "bf16", nope: 512, rope: 64, locDtype: "i64" });
    expect(parseLayoutKey("1024/128/i64")).toBeNull();
    expect(parseLayoutKey("0+128/i64")).toBeNull();
    expect(parseLayoutKey("fp8_e4m3<u8:512+64/i64")).toBeNull();
  });

  it("maps n to the bucket whose range (2^(b-1), 2^b] holds it", () => {
    expect([1, 2, 3, 4, 5, 8, 9, 1024, 1025, 131072].map(bucketOf)).toEqual([0, 1, 2, 2, 3, 3, 4, 10, 11, 17]);
    expect(() => bucketOf(0)).toThrow(RangeError);
    expect(() => bucketOf(1.5)).toThrow(RangeError);
  });

  it("picks the bucket's best choice and clamps n beyond the last bucket", () => {
    const lp = fakeLayoutProfile(1, 10);
    expect(choiceFor(lp, 3)).toEqual(lp.buckets[2]!.best);
    expect(choiceFor(lp, 1 << 20)).toEqual(lp.buckets[10]!.best);
  });

  it("finds the crossover as the first n from which TMA keeps winning", () => {
    const lp = fakeLayoutProfile();
    expect(computeCrossoverN(lp.buckets)).toBe(512);
    // A TMA win that does not last is not a crossover.
    const b3 = lp.buckets[3]!;
    b3.best = { ...b3.bestTma!, us: b3.bestVector.us / 2 };
    b3.bestTma = b3.best;
    expect(computeCrossoverN(lp.buckets)).toBe(512);
    for (const b of lp.buckets) b.best = b.bestVector;
    expect(computeCrossoverN(lp.buckets)).toBeNull();
  });
});

describe("identityKey", () => {
  it("maps identical GPUs to the same readable, filesystem-safe key", () => {
    const k = identityKey(h100());
    expect(identityKey(h100())).toBe(k);
    expect(k).toMatch(/^nvidia-h100-80gb-hbm3__sm90__132sm__drv13000__rt13000__[0-9a-f]{12}$/);
  });

  it("maps any difference in identity to a different key", () => {
    const variants: GpuIdentity[] = [
      h100({ gpu: { name: "NVIDIA H100 PCIe" } }),
      h100({ gpu: { ccMajor: 10 } }),
      h100({ gpu: { ccMinor: 1 } }),
      h100({ gpu: { smCount: 114 } }),
      h100({ gpu: { l2Bytes: 1 } }),
      h100({ gpu: { driverVersion: 12080 } }),
      h100({ gpu: { runtimeVersion: 12080 } }),
      h100({ libraryBuildId: "build-bbbb2222" }),
      h100({ packageVersion: "0.2.0" }),
    ];
    const keys = new Set([identityKey(h100()), ...variants.map(identityKey)]);
    expect(keys.size).toBe(variants.length + 1);
  });

  it("keeps names that slug alike apart", () => {
    const a = identityKey(h100({ gpu: { name: "NVIDIA H100" } }));
    const b = identityKey(h100({ gpu: { name: "NVIDIA-H100" } }));
    expect(a.split("__")[0]).toBe(b.split("__")[0]!);
    expect(a).not.toBe(b);
  });

  it("produces only safe characters from hostile names", () => {
    const k = identityKey(h100({ gpu: { name: "../../etc/passwd \u0000 ✓" + "x".repeat(300) } }));
    expect(k).toMatch(/^[a-z0-9_-]+$/);
    expect(k.length).toBeLessThan(120);
    expect(identityKey(h100({ gpu: { name: "✓✓✓" } }))).toStartWith("gpu__");
  });
});

describe("identityMismatch", () => {
  const p = makeProfile(h100(), {});

  it("accepts the identity the profile was made for", () => {
    expect(identityMismatch(p, h100())).toBeNull();
  });

  it("names the field that differs, file value first", () => {
    expect(identityMismatch(p, h100({ gpu: { driverVersion: 12080 } }))).toBe("driver 13000 ≠ 12080");
    expect(identityMismatch(p, h100({ libraryBuildId: "def" }))).toBe("library build build-aaaa1111 ≠ def");
    expect(identityMismatch(p, h100({ gpu: { name: "NVIDIA A100-SXM4-80GB" } }))).toBe(
      "GPU NVIDIA H100 80GB HBM3 ≠ NVIDIA A100-SXM4-80GB",
    );
    expect(identityMismatch(p, h100({ gpu: { ccMinor: 1 } }))).toBe("compute capability 9.0 ≠ 9.1");
    expect(identityMismatch(p, h100({ gpu: { runtimeVersion: 1 } }))).toBe("runtime 13000 ≠ 1");
    expect(identityMismatch(p, h100({ packageVersion: "9.9.9" }))).toBe("package version 0.1.0 ≠ 9.9.9");
  });

  it("says a newer schema is not understood", () => {
    expect(identityMismatch({ ...p, schemaVersion: 2 }, h100())).toBe(
      "schema version 2 is newer than this package understands",
    );
  });
});
