import { describe, expect, it } from "bun:test";
import {
  BucketSchema,
  LayoutKeySchema,
  LayoutProfileSchema,
  ProfileSchema,
  SCHEMA_VERSION,
  identityKey,
  identityMismatch,
  makeProfile,
  type Bucket,
  type GpuIdentity,
  type LayoutProfile,
  type Profile,
} from "../../autotune/profile.ts";
import { copyLayout, layoutKey } from "../../src/layout_key.ts";
import { BUCKET_COUNT, LAST_BUCKET } from "../../src/vocabulary.ts";
import { fakeLayoutProfile, h100 } from "./fixtures/fake.ts";

function profile(): Profile {
  return makeProfile(h100(), { "1024+128/i64": fakeLayoutProfile(), "656+0/i32": fakeLayoutProfile(2, 5) });
}

function issuesOf(value: unknown): string {
  const r = ProfileSchema.safeParse(value);
  return r.success ? "" : JSON.stringify(r.error.issues);
}

/** The messages of the issues the bucket schema finds, "" when it accepts the bucket. */
function bucketIssues(bucket: unknown): string {
  const r = BucketSchema.safeParse(bucket);
  return r.success ? "" : r.error.issues.map((i) => i.message).join("; ");
}

/** Bucket 4 of the fake profile: four launches, one per path, fastest first. */
function bucket(): Bucket {
  return structuredClone(fakeLayoutProfile().buckets[4]!);
}

describe("profile schema", () => {
  it("round-trips a profile through JSON unchanged", () => {
    const p = profile();
    const back = ProfileSchema.parse(JSON.parse(JSON.stringify(p)));
    expect(back).toEqual(p);
    expect(back.schemaVersion).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(2);
    expect(Object.keys(back.layouts).sort()).toEqual(["1024+128/i64", "656+0/i32"]);
  });

  it("accepts the fake profile, whose buckets rank a launch of each of the four paths", () => {
    const lp = fakeLayoutProfile();
    expect(LayoutProfileSchema.safeParse(lp).success).toBe(true);
    expect(lp.buckets).toHaveLength(BUCKET_COUNT);
    expect(new Set(lp.buckets.flatMap((b) => b.ranked.map((c) => c.path)))).toEqual(new Set(["vector", "tma", "specialized", "spread"]));
  });

  it("rejects buckets that do not start at 0", () => {
    const lp = fakeLayoutProfile();
    lp.buckets.shift();
    expect(LayoutProfileSchema.safeParse(lp).success).toBe(false);
  });

  it("rejects unsorted, duplicated and gapped buckets", () => {
    const swapped = fakeLayoutProfile();
    [swapped.buckets[3], swapped.buckets[4]] = [swapped.buckets[4]!, swapped.buckets[3]!];
    const duplicated = fakeLayoutProfile(1, 10);
    duplicated.buckets.splice(5, 0, duplicated.buckets[5]!);
    const gapped = fakeLayoutProfile();
    gapped.buckets.splice(7, 1);
    for (const lp of [swapped, duplicated, gapped]) {
      expect(JSON.stringify(LayoutProfileSchema.safeParse(lp).error?.issues)).toContain("sorted, unique and contiguous from 0");
    }
  });

  it("rejects an empty bucket list and one with more buckets than there are", () => {
    expect(LayoutProfileSchema.safeParse({ ...fakeLayoutProfile(), buckets: [] }).success).toBe(false);
    const long = fakeLayoutProfile();
    long.buckets.push({ ...long.buckets[LAST_BUCKET]!, bucket: BUCKET_COUNT, n: 2 ** BUCKET_COUNT });
    expect(LayoutProfileSchema.safeParse(long).success).toBe(false);
  });

  it("accepts a profile that stops before the last bucket (the memory allowed no larger n)", () => {
    expect(LayoutProfileSchema.safeParse(fakeLayoutProfile(1, 9)).success).toBe(true);
  });

  it("rejects a bucket whose n is not 2^bucket", () => {
    const b = bucket();
    b.n = 15;
    expect(bucketIssues(b)).toContain("n must be 2^bucket = 16, got 15");
  });

  it("records whether the timed launches used PDL, and refuses a profile that does not say", () => {
    const { pdl: _pdl, ...without } = fakeLayoutProfile();
    expect(LayoutProfileSchema.safeParse(without).success).toBe(false);
    expect(LayoutProfileSchema.safeParse({ ...fakeLayoutProfile(), pdl: false }).success).toBe(true);
    expect(LayoutProfileSchema.safeParse({ ...fakeLayoutProfile(), pdl: "yes" }).success).toBe(false);
  });

  it("rejects a profile of the previous schema, with bestVector and bestTma instead of ranked launches", () => {
    const vector = { path: "vector", warps: 4, rowsPerWarp: 1, us: 2 };
    const v1 = {
      tunedAt: new Date(0).toISOString(),
      tuneMs: 1,
      method: "search",
      crossoverN: null,
      buckets: [{ bucket: 0, n: 1, best: vector, bestVector: vector, bestTma: null }],
    };
    expect(LayoutProfileSchema.safeParse(v1).success).toBe(false);
  });
});

describe("a bucket's ranked launches", () => {
  it("are accepted fastest first, one per path, with a vector launch among them", () => {
    expect(bucketIssues(bucket())).toBe("");
  });

  it("may be a vector launch alone (a write no other path can take)", () => {
    const b = bucket();
    b.ranked = b.ranked.filter((c) => c.path === "vector");
    expect(bucketIssues(b)).toBe("");
  });

  it("are refused without a vector launch, which every write can take", () => {
    const b = bucket();
    b.ranked = b.ranked.filter((c) => c.path !== "vector");
    expect(bucketIssues(b)).toContain("ranked must include a vector launch");
  });

  it("are refused when they are not fastest first", () => {
    const b = bucket();
    b.ranked.reverse();
    expect(bucketIssues(b)).toContain("ranked must be fastest first");
  });

  it("accept two launches of equal time in either order", () => {
    const b = bucket();
    b.ranked[1]!.us = b.ranked[0]!.us;
    expect(bucketIssues(b)).toBe("");
  });

  it("are refused when a path appears twice", () => {
    const b = bucket();
    const vector = b.ranked.find((c) => c.path === "vector")!;
    b.ranked = [...b.ranked.filter((c) => c.path !== "tma"), { ...vector, warps: 16, us: vector.us + 100 }];
    expect(bucketIssues(b)).toContain("path vector appears twice");
  });

  it("are refused for a spread launch with warps other than 0, since its row sizes its block", () => {
    for (const warps of [1, 2, 4, 8, 16]) {
      const b = bucket();
      b.ranked.find((c) => c.path === "spread")!.warps = warps as 1;
      expect(bucketIssues(b)).toContain("spread launches have warps 0, the other paths 1-16");
    }
  });

  it("are refused for a vector, TMA or specialized launch with warps 0", () => {
    for (const path of ["vector", "tma", "specialized"] as const) {
      const b = bucket();
      b.ranked.find((c) => c.path === path)!.warps = 0;
      expect(bucketIssues(b)).toContain("spread launches have warps 0, the other paths 1-16");
    }
  });

  it("are refused empty, or with launch shapes outside the tuned space", () => {
    expect(bucketIssues({ ...bucket(), ranked: [] })).not.toBe("");
    for (const bad of [{ warps: 3 }, { warps: 32 }, { rowsPerWarp: 8 }, { rowsPerWarp: 0 }, { path: "warp" }, { us: 0 }, { us: -1 }, { us: Infinity }, { extra: 1 }]) {
      const b = bucket();
      Object.assign(b.ranked[0]!, bad);
      expect(bucketIssues(b), JSON.stringify(bad)).not.toBe("");
    }
  });
});

describe("profile files", () => {
  it("rejects unknown keys, bad layout keys, bad dates and other schema versions", () => {
    const p = profile();
    expect(issuesOf({ ...p, extra: 1 })).toContain("extra");
    expect(issuesOf({ ...p, layouts: { "1024-128-i64": fakeLayoutProfile() } })).toContain("layout key");
    expect(issuesOf({ ...p, createdAt: "yesterday" })).not.toBe("");
    expect(issuesOf({ ...p, schemaVersion: SCHEMA_VERSION - 1 })).not.toBe("");
    expect(issuesOf({ ...p, schemaVersion: SCHEMA_VERSION + 1 })).not.toBe("");
    expect(issuesOf({ ...p, layouts: { "1024+128/i64": { ...fakeLayoutProfile(), tuneMs: -1 } } })).not.toBe("");
    expect(issuesOf({ ...p, layouts: { "1024+128/i64": { ...fakeLayoutProfile(), method: "guess" } } })).not.toBe("");
    expect(issuesOf(p)).toBe("");
  });

  it("accepts as layout keys exactly what layoutKey names", () => {
    for (const key of ["1024+128/i64", "656+0/i32", "fp8_ds_mla.pow2<bf16:512+64/i64", "fp8_ds_v4.pow2<bf16:448+64@p64/i32", "fp8_e5m2<fp16:512+64/i64"]) {
      expect(LayoutKeySchema.safeParse(key).success, key).toBe(true);
    }
    expect(LayoutKeySchema.safeParse(layoutKey(copyLayout(1152, 0, 8))).success).toBe(true);
    for (const key of ["1024/128/i64", "0+0/i64", "fp8_ds_mla<bf16:512+64/i64", "fp8_e4m3<u8:512+64/i64", `${"9".repeat(130)}+0/i64`]) {
      expect(LayoutKeySchema.safeParse(key).success, key).toBe(false);
    }
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

  it("copies the layouts given to makeProfile rather than aliasing them", () => {
    const layouts: Record<string, LayoutProfile> = { "1024+128/i64": fakeLayoutProfile() };
    const p = makeProfile(h100(), layouts);
    layouts["656+0/i32"] = fakeLayoutProfile();
    expect(Object.keys(p.layouts)).toEqual(["1024+128/i64"]);
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

  it("says a newer schema is not understood, and an older one differs", () => {
    expect(identityMismatch({ ...p, schemaVersion: SCHEMA_VERSION + 1 }, h100())).toBe(
      `schema version ${SCHEMA_VERSION + 1} is newer than this package understands`,
    );
    expect(identityMismatch({ ...p, schemaVersion: 1 }, h100())).toBe(`schema version 1 ≠ ${SCHEMA_VERSION}`);
  });
});
