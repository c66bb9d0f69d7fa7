/**
 * Tuning on a device: what the GPU and the layout let the tuner time. The device is the host
 * fixture's (HOST_MLA_KV_CC_MAJOR, HOST_MLA_KV_SMEM_OPTIN set its properties); the timing is a
 * fake landscape injected through measureWith, so nothing is launched.
 */
import { describe, expect, it } from "bun:test";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

const host = hostLibrary();

const prelude = `
  const { tuningSpace, tuneOnDevice } = await import(root + "/autotune/tune.ts");
  const { copyLayout } = await import(root + "/src/layout_key.ts");
  const { LayoutProfileSchema } = await import(root + "/autotune/profile.ts");
  const { h200Designs } = await import(root + "/tests/autotune/fixtures/landscapes.ts");
  const device = m.deviceInfo(0).index;
  const dsMla = { format: "fp8_ds_mla", sourceDtype: "bf16", nopeBytes: 1024, ropeBytes: 128, locBytes: 8, pageSize: 0, scaleRule: "pow2" };
  const v4 = { format: "fp8_ds_v4", sourceDtype: "bf16", nopeBytes: 896, ropeBytes: 128, locBytes: 8, pageSize: 64, scaleRule: "pow2" };
`;

describe.skipIf(!host)(`tuning on the host fixture's device${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const env = (extra: Record<string, string> = {}) => ({ MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0", ...extra });

  it("offers every path for aligned 1152-byte rows on sm_90, and no TMA before it", () => {
    const body = `${prelude} return tuningSpace(device, copyLayout(1024, 128, 8)).paths;`;
    const hopper = runInChild(body, env());
    const ampere = runInChild(body, env({ HOST_MLA_KV_CC_MAJOR: "8" }));
    expect(hopper.value, describeChild(hopper)).toEqual(["vector", "tma", "specialized", "spread"]);
    expect(ampere.value, describeChild(ampere)).toEqual(["vector", "specialized", "spread"]);
  });

  it("offers only what each layout can take: vector and TMA for rows with no specialized kernels or for ds_mla, vector alone for a paged format or a misaligned row", () => {
    const result = runInChild(`${prelude}
      return [copyLayout(1024, 256, 8), dsMla, v4, copyLayout(1000, 120, 4)].map((l) => tuningSpace(device, l).paths);
    `, env());
    expect(result.value, describeChild(result)).toEqual([["vector", "tma"], ["vector", "tma"], ["vector"], ["vector"]]);
  });

  it("allows TMA launches of 16400-byte rows only with the warps whose stages fit the device's shared memory", () => {
    const body = `${prelude}
      const { allowed } = tuningSpace(device, copyLayout(16384, 16, 8));
      return [1, 2, 4, 8, 16].map((warps) => allowed({ path: "tma", warps, rowsPerWarp: 1 }));
    `;
    const h100 = runInChild(body, env());
    const roomy = runInChild(body, env({ HOST_MLA_KV_SMEM_OPTIN: "264192" }));
    expect(h100.value, describeChild(h100)).toEqual([true, true, true, false, false]);
    expect(roomy.value, describeChild(roomy)).toEqual([true, true, true, true, false]);
  });

  it("tunes with an injected timing every bucket, timing only what the device allows and ranking only that", () => {
    const result = runInChild(`${prelude}
      const { allowed, paths } = tuningSpace(device, copyLayout(16384, 16, 8));
      const timed = new Set();
      let refused = 0;
      const { profile, stats } = tuneOnDevice(device, copyLayout(16384, 16, 8), {
        measureWith: (c, n) => { timed.add(c.path); if (!allowed(c)) refused++; return h200Designs.truth(c, n); },
      });
      return {
        paths,
        timed: [...timed].sort(),
        refused,
        buckets: profile.buckets.length,
        ranked: [...new Set(profile.buckets.flatMap((b) => b.ranked.map((c) => c.path)))].sort(),
        tmaWarps: Math.max(...profile.buckets.map((b) => b.ranked.find((c) => c.path === "tma").warps)),
        valid: LayoutProfileSchema.safeParse(profile).success,
        pdl: profile.pdl,
        fewer: stats.measurements < stats.configsTotal,
      };
    `, env());
    expect(result.value, describeChild(result)).toEqual({
      paths: ["vector", "tma"],
      timed: ["tma", "vector"],
      refused: 0,
      buckets: 17,
      ranked: ["tma", "vector"],
      tmaWarps: 4,
      valid: true,
      pdl: true,
      fewer: true,
    });
  });

  it("records the PDL setting and the method it was asked for", () => {
    const result = runInChild(`${prelude}
      const { profile, stats } = tuneOnDevice(device, copyLayout(1024, 128, 8), {
        method: "exhaustive",
        measure: { pdl: false },
        measureWith: (c, n) => h200Designs.truth(c, n),
      });
      return { pdl: profile.pdl, method: profile.method, configsMeasured: stats.configsMeasured, configsTotal: stats.configsTotal };
    `, env({ HOST_MLA_KV_CC_MAJOR: "8" }));
    // sm_80: vector and specialized (15 launches each) and spread (3), at 17 buckets.
    expect(result.value, describeChild(result)).toEqual({ pdl: false, method: "exhaustive", configsMeasured: 17 * 33, configsTotal: 17 * 33 });
  });
});
