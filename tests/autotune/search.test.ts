import { describe, expect, it } from "bun:test";
import { LayoutProfileSchema, computeCrossoverN, type LaunchConfig, type LayoutProfile } from "../../autotune/profile.ts";
import {
  CONFIRM_TOP,
  DEFAULT_MAX_BUCKET,
  configSpace,
  tuneLayout,
  tuneLayoutWithStats,
  type MeasureFn,
  type TuneOptions,
} from "../../autotune/search.ts";
import { H100_RECORDED, recorded } from "./fixtures/h100_recorded.ts";
import {
  LANDSCAPES,
  adversarial,
  bucketQuirk,
  counting,
  h100Like,
  noisy,
  rowsNotConvex,
  rowsWinLate,
  sharpCrossover,
  twoWarpBasins,
  type Landscape,
} from "./fixtures/landscapes.ts";

const clock = () => {
  let t = Date.UTC(2026, 0, 1);
  return () => (t += 5);
};

function tune(measure: MeasureFn, opts: Partial<TuneOptions> = {}) {
  return tuneLayoutWithStats({ measure, tmaAllowed: true, now: clock(), ...opts });
}

/** The true time of the fastest config at n, over the configs allowed. */
function optimum(l: Landscape, n: number, path?: LaunchConfig["path"], tmaAllowed = true): number {
  return Math.min(...configSpace(tmaAllowed).filter((c) => path === undefined || c.path === path).map((c) => l.truth(c, n)));
}

/**
 * How much slower, as a fraction, each bucket's choices truly are than the true optimum: best and
 * bestVector always; bestTma where TMA is truly within 3 % of vector (further behind, TMA is not
 * walked, by design).
 */
function worstLoss(l: Landscape, profile: LayoutProfile, tmaAllowed = true) {
  let worst = { loss: 0, n: 0, which: "" };
  for (const b of profile.buckets) {
    const tmaClose = tmaAllowed && optimum(l, b.n, "tma") <= 1.03 * optimum(l, b.n, "vector");
    const checks: Array<[string, LaunchConfig | null, LaunchConfig["path"] | undefined]> = [
      ["best", b.best, undefined],
      ["bestVector", b.bestVector, "vector"],
      ["bestTma", tmaClose ? b.bestTma : null, "tma"],
    ];
    for (const [which, cfg, path] of checks) {
      if (cfg === null) continue;
      const loss = l.truth(cfg, b.n) / optimum(l, b.n, path, tmaAllowed) - 1;
      if (loss > worst.loss) worst = { loss, n: b.n, which };
    }
  }
  return worst;
}

/** The true crossover: the smallest n from which TMA's optimum beats vector's at every bucket. */
function trueCrossover(truth: MeasureFn): number | null {
  let from: number | null = null;
  for (let b = DEFAULT_MAX_BUCKET; b >= 0; b--) {
    const n = 2 ** b;
    const l = { name: "", truth, crossoverN: null };
    if (!(optimum(l, n, "tma") < optimum(l, n, "vector"))) break;
    from = n;
  }
  return from;
}

/** The recorded H100 grids as landscapes. */
const H100: Landscape[] = Object.keys(H100_RECORDED).map((key) => ({
  name: `recorded H100 timings of ${key}`,
  truth: recorded(key),
  crossoverN: trueCrossover(recorded(key)),
}));

const variants = [...LANDSCAPES, ...H100].flatMap((l, i) => [
  { label: l.name, landscape: l, measure: () => l.truth },
  { label: `${l.name}, with 1.5 % timing noise`, landscape: l, measure: () => noisy(l.truth, 1000 + i) },
]);

describe("the search", () => {
  for (const v of variants) {
    it(`lands within 3 % of the exhaustive optimum at every bucket: ${v.label}`, () => {
      const search = tune(v.measure(), { method: "search" }).profile;
      const exhaustive = tune(v.measure(), { method: "exhaustive" }).profile;
      expect(worstLoss(v.landscape, search).loss).toBeLessThanOrEqual(0.03);
      for (let b = 0; b < search.buckets.length; b++) {
        const n = 2 ** b;
        expect(v.landscape.truth(search.buckets[b]!.best, n)).toBeLessThanOrEqual(
          1.03 * v.landscape.truth(exhaustive.buckets[b]!.best, n),
        );
      }
    });
  }

  for (const l of [...LANDSCAPES, ...H100]) {
    it(`uses under half the timings of the exhaustive method, and under 60 % without TMA: ${l.name}`, () => {
      for (const tmaAllowed of [true, false]) {
        const search = counting(l.truth);
        const exhaustive = counting(l.truth);
        const s = tune(search, { method: "search", tmaAllowed }).stats;
        const e = tune(exhaustive, { method: "exhaustive", tmaAllowed }).stats;
        expect(s.measurements).toBe(search.calls);
        expect(e.measurements).toBe(exhaustive.calls);
        // Without TMA there is one grid of 15 configs per bucket, and checking that a config
        // beats its neighbours already takes about a third of it.
        expect(search.calls).toBeLessThan((tmaAllowed ? 0.5 : 0.6) * exhaustive.calls);
      }
    });
  }

  it("finds the exact optimum of every noise-free fake landscape", () => {
    for (const l of LANDSCAPES) expect(worstLoss(l, tune(l.truth).profile).loss).toBe(0);
  });

  it("reaches 4 rows per warp past a slower 2 where 4 win", () => {
    const { profile } = tune(rowsNotConvex.truth);
    for (const b of profile.buckets) {
      const fastest = configSpace(true).reduce((x, y) => (rowsNotConvex.truth(y, b.n) < rowsNotConvex.truth(x, b.n) ? y : x));
      expect(b.best.rowsPerWarp).toBe(fastest.rowsPerWarp);
    }
    expect(profile.buckets[13]!.best.rowsPerWarp).toBe(4);
    expect(profile.buckets[9]!.best.rowsPerWarp).toBe(1);
  });

  it("finds the winner of a bucket that differs from both its neighbours", () => {
    const { profile } = tune(bucketQuirk.truth);
    expect(profile.buckets.map((b) => b.best.warps)).toEqual(profile.buckets.map((b) => (b.n === 512 ? 8 : 4)));
  });

  it("finds a second basin in the warp count that the walk alone would not reach", () => {
    const { profile } = tune(twoWarpBasins.truth);
    expect(profile.buckets.map((b) => b.best.warps)).toEqual(profile.buckets.map((b) => (b.n <= 32 ? 2 : 16)));
  });

  it("walks several steps in one bucket where the best warp count sweeps fast", () => {
    const { profile } = tune(adversarial.truth);
    const warps = (n: number) => profile.buckets[Math.log2(n)]!.bestVector.warps;
    expect([warps(4096), warps(8192), warps(16384)]).toEqual([1, 4, 16]);
    expect(profile.buckets.at(-1)!.bestVector).toMatchObject({ warps: 16, rowsPerWarp: 4 });
  });

  it("finds the recorded H100 winners the exhaustive method finds: 4 rows at n = 8192, 8 warps at 512", () => {
    const i32 = tune(recorded("1024+128/i32")).profile;
    expect(i32.buckets[13]!.best.rowsPerWarp).toBe(4);
    expect(i32.buckets[9]!.best.warps).toBe(8);
    const u8 = tune(recorded("528+128/i64")).profile;
    expect(u8.crossoverN).toBe(16384);
    expect(u8.crossoverN).toBe(tune(recorded("528+128/i64"), { method: "exhaustive" }).profile.crossoverN);
  });

  it("picks two rows per warp exactly where they start to win", () => {
    const { profile } = tune(rowsWinLate.truth);
    for (const b of profile.buckets) expect(b.best.rowsPerWarp).toBe(b.n < 2048 ? 1 : 2);
  });
});

describe("the crossover", () => {
  it("of each fake landscape is what its description says", () => {
    for (const l of LANDSCAPES) expect(trueCrossover(l.truth)).toBe(l.crossoverN);
    expect(H100.map((l) => l.crossoverN)).toEqual([65536, null, 16384, 16384]);
  });

  for (const l of [...LANDSCAPES, ...H100]) {
    it(`matches the landscape for both methods: ${l.name}`, () => {
      for (const method of ["search", "exhaustive"] as const) {
        const { profile } = tune(l.truth, { method });
        expect(profile.crossoverN).toBe(l.crossoverN);
        expect(profile.crossoverN).toBe(computeCrossoverN(profile.buckets));
      }
    });
  }

  it("is at 1024 for a sharp switch at n = 768, with or without noise", () => {
    const l = sharpCrossover(768);
    expect(tune(l.truth).profile.crossoverN).toBe(1024);
    expect(tune(noisy(l.truth, 42)).profile.crossoverN).toBe(1024);
    const { buckets } = tune(l.truth).profile;
    expect(buckets[9]!.best.path).toBe("vector");
    expect(buckets[10]!.best.path).toBe("tma");
  });

  it("is null when TMA wins only in the middle of the range", () => {
    const { profile } = tune(adversarial.truth);
    expect(profile.buckets.some((b) => b.best.path === "tma")).toBe(true);
    expect(profile.buckets.at(-1)!.best.path).toBe("vector");
    expect(profile.crossoverN).toBeNull();
  });
});

describe("TMA far behind", () => {
  it("gets two timings per bucket while it trails vector by more than 5 %, and a walk once close", () => {
    const l = sharpCrossover(768);
    const perBucket = Array.from({ length: 17 }, () => 0);
    tune((cfg, n) => {
      if (cfg.path === "tma") perBucket[Math.log2(n)]!++;
      return l.truth(cfg, n);
    });
    // Bucket 0 walks (no history yet); from there TMA is 8 % behind, and is timed in its last
    // winner's shape (8 warps) and in vector's (4 warps).
    expect(perBucket.slice(1, 10)).toEqual(Array(9).fill(2));
    // At n = 1024 TMA's last winner is suddenly 15 % ahead: walked and re-timed again.
    expect(perBucket[10]!).toBeGreaterThan(5);
  });

  it("is still reported, with the time of the faster of those two", () => {
    const l = sharpCrossover(768);
    const { profile } = tune(l.truth);
    for (const b of profile.buckets.slice(0, 10)) {
      expect(b.bestTma!.us).toBeCloseTo(l.truth(b.bestTma!, b.n), 12);
      expect(b.bestTma!.us).toBeGreaterThan(b.bestVector.us * 1.05);
    }
  });
});

describe("without TMA", () => {
  for (const method of ["search", "exhaustive"] as const) {
    it(`never times or chooses a TMA config (${method})`, () => {
      for (const l of LANDSCAPES) {
        const m = counting(l.truth);
        const { profile } = tune(m, { method, tmaAllowed: false });
        expect(m.tmaCalls).toBe(0);
        expect(profile.crossoverN).toBeNull();
        for (const b of profile.buckets) {
          expect(b.bestTma).toBeNull();
          expect(b.best.path).toBe("vector");
          expect(b.best).toEqual(b.bestVector);
        }
        expect(worstLoss(l, profile, false).loss).toBeLessThanOrEqual(0.03);
      }
    });
  }
});

describe("the result", () => {
  it("passes the layout profile schema for both methods, with and without TMA", () => {
    for (const method of ["search", "exhaustive"] as const) {
      for (const tmaAllowed of [true, false]) {
        const { profile } = tune(noisy(h100Like.truth, 3), { method, tmaAllowed });
        const parsed = LayoutProfileSchema.safeParse(JSON.parse(JSON.stringify(profile)));
        expect(parsed.success).toBe(true);
        expect(profile.method).toBe(method);
      }
    }
  });

  it("covers buckets 0 to 16 by default, n = 1 to 65536", () => {
    const { profile } = tune(h100Like.truth);
    expect(DEFAULT_MAX_BUCKET).toBe(16);
    expect(profile.buckets.map((b) => b.n)).toEqual(Array.from({ length: 17 }, (_, b) => 2 ** b));
  });

  it("covers exactly the buckets asked for, odd or even, down to bucket 0 alone", () => {
    for (const maxBucket of [0, 1, 2, 5, 11]) {
      const { profile } = tune(h100Like.truth, { maxBucket });
      expect(profile.buckets.length).toBe(maxBucket + 1);
      expect(LayoutProfileSchema.safeParse(profile).success).toBe(true);
      expect(worstLoss(h100Like, profile).loss).toBe(0);
    }
  });

  it("is the same on every run with the same measurements", () => {
    const a = tune(noisy(adversarial.truth, 9));
    const b = tune(noisy(adversarial.truth, 9));
    expect(b.profile).toEqual(a.profile);
    expect(b.stats).toEqual(a.stats);
  });

  it("takes tunedAt and tuneMs from the clock it is given", () => {
    const times = [1_767_225_600_000, 1_767_225_604_250];
    const profile = tuneLayout({ measure: h100Like.truth, tmaAllowed: true, now: () => times.shift()! });
    expect(profile.tunedAt).toBe("2026-01-01T00:00:04.250Z");
    expect(profile.tuneMs).toBe(4250);
    expect(profile.method).toBe("search");
  });

  it("reports each config's fastest timing, so a slow first look does not stick", () => {
    // Every config's first timing is 10 % slow; the re-timing of the leaders is exact.
    const seen = new Set<string>();
    const measure: MeasureFn = (cfg, n) => {
      const key = `${cfg.path}/${cfg.warps}/${cfg.rowsPerWarp}/${n}`;
      const first = !seen.has(key);
      seen.add(key);
      return h100Like.truth(cfg, n) * (first ? 1.1 : 1);
    };
    for (const method of ["search", "exhaustive"] as const) {
      seen.clear();
      const { profile } = tune(measure, { method });
      for (const b of profile.buckets) {
        expect(b.best.us).toBeCloseTo(h100Like.truth(b.best, b.n), 12);
        expect(b.bestVector.us).toBeCloseTo(h100Like.truth(b.bestVector, b.n), 12);
      }
    }
  });

  it("gives an exact tie to vector and to the config first in order", () => {
    const { profile } = tune(() => 2, { method: "exhaustive" });
    for (const b of profile.buckets) expect(b.best).toEqual({ path: "vector", warps: 1, rowsPerWarp: 1, us: 2 });
    expect(tune(() => 2).profile.buckets.every((b) => b.best.path === "vector")).toBe(true);
  });
});

describe("the counts", () => {
  it("has the exhaustive method time every config at every bucket, then the leaders again", () => {
    for (const tmaAllowed of [true, false]) {
      const { stats } = tune(h100Like.truth, { method: "exhaustive", tmaAllowed });
      const paths = tmaAllowed ? 2 : 1;
      expect(stats.configsTotal).toBe(17 * paths * 15);
      expect(stats.configsMeasured).toBe(stats.configsTotal);
      // Vector's two leaders always; TMA's too where TMA is within 5 % of vector (n >= 4096 here).
      const again = stats.perBucket.map((c) => c - paths * 15);
      expect(again).toEqual(Array.from({ length: 17 }, (_, b) => (tmaAllowed && b >= 12 ? 2 : 1) * CONFIRM_TOP));
    }
  });

  it("adds up per bucket to the total for the search", () => {
    const { stats } = tune(adversarial.truth);
    expect(stats.perBucket.length).toBe(17);
    expect(stats.perBucket.reduce((a, c) => a + c, 0)).toBe(stats.measurements);
    expect(stats.configsMeasured).toBeLessThan(stats.configsTotal);
    expect(stats.perBucket.every((c) => c > 0)).toBe(true);
  });
});

describe("progress", () => {
  it("reports every bucket once, counting up to the total", () => {
    for (const method of ["search", "exhaustive"] as const) {
      const calls: Array<[number, number, string]> = [];
      tune(h100Like.truth, { method, onProgress: (d, t, label) => calls.push([d, t, label]) });
      expect(calls.map((c) => c[0])).toEqual(Array.from({ length: 17 }, (_, i) => i + 1));
      expect(calls.every((c) => c[1] === 17)).toBe(true);
      expect(new Set(calls.map((c) => c[2])).size).toBe(17);
      expect(calls.map((c) => c[2])).toContain("n = 65536");
    }
  });
});

describe("bad input", () => {
  it("refuses a timing that is not a positive number, naming the config", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => tune((_cfg, n) => (n === 64 ? bad : 1))).toThrow(/^measure\(vector, \d+ warps, \d rows\/warp, n = 64\) returned .*positive number of microseconds$/);
    }
  });

  it("lets an error from the timing through", () => {
    expect(() =>
      tune(() => {
        throw new Error("CUDA error: an illegal memory access was encountered");
      }),
    ).toThrow(/illegal memory access/);
  });

  it("refuses a maxBucket outside 0..31 and an unknown method", () => {
    expect(() => tune(h100Like.truth, { maxBucket: -1 })).toThrow(RangeError);
    expect(() => tune(h100Like.truth, { maxBucket: 32 })).toThrow(RangeError);
    expect(() => tune(h100Like.truth, { maxBucket: 2.5 })).toThrow(RangeError);
    expect(() => tune(h100Like.truth, { method: "random" as never })).toThrow(/method/);
  });
});
