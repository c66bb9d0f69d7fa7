import { describe, expect, it } from "bun:test";
import { COLD_L2_FACTOR, SCRATCH_MAX_BYTES, SCRATCH_MAX_N, SCRATCH_RESERVE_BYTES, randomSlots, scratchShape, widen } from "../../autotune/scratch.ts";
import { copyLayout, layoutRowBytes, type WriteLayout } from "../../src/layout_key.ts";
import { pageBytes } from "../../src/write_format.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** L2 of an H100 (50 MiB) and of an H200 (60 MiB). */
const H100_L2 = 50 * MiB;
const H200_L2 = 60 * MiB;

const BF16_576 = copyLayout(1024, 128, 8);
const V4: WriteLayout = { format: "fp8_ds_v4", sourceDtype: "bf16", nopeBytes: 896, ropeBytes: 128, locBytes: 8, pageSize: 64, scaleRule: "pow2" };

/** The budget allocScratch gives itself with `free` bytes free: all but a reserve, at most a cap. */
const budgetFor = (free: number) => Math.min(SCRATCH_MAX_BYTES, Math.max(0, free - SCRATCH_RESERVE_BYTES));

/** Bytes a slot of the layout's cache takes: a row, or a paged format's share of a page. */
function slotBytes(layout: WriteLayout): number {
  return layout.pageSize > 0 ? pageBytes(layout.format as "fp8_ds_v4" | "fp8_indexer", layout.pageSize) / layout.pageSize : layoutRowBytes(layout);
}

/** What the scratch set of a shape holds: the caches, the sources shared by the layers, the loc vectors. */
function footprint(layout: WriteLayout, shape: { layers: number; maxN: number; capacity: number }) {
  const caches = shape.layers * shape.capacity * slotBytes(layout);
  const sources = shape.maxN * (layout.nopeBytes + layout.ropeBytes);
  const loc = shape.layers * shape.maxN * layout.locBytes;
  return { caches, total: caches + sources + loc };
}

describe("scratchShape", () => {
  for (const [free, l2] of [[1 * GiB, H100_L2], [3 * GiB, H100_L2], [1 * GiB, H200_L2], [3 * GiB, H200_L2]] as const) {
    it(`fits 8 layers of every bucket up to n = 65536 for bf16 512+64 with ${free / GiB} GiB free and ${l2 / MiB} MiB of L2, caches at least 4 x L2`, () => {
      const budget = budgetFor(free);
      const shape = scratchShape(BF16_576, budget, l2)!;
      expect(shape).toMatchObject({ layers: 8, maxN: SCRATCH_MAX_N });
      const { caches, total } = footprint(BF16_576, shape);
      expect(total).toBeLessThanOrEqual(budget);
      expect(caches).toBeGreaterThanOrEqual(COLD_L2_FACTOR * l2);
      expect(shape.capacity).toBeGreaterThanOrEqual(shape.maxN);
    });
  }

  it("gives every layer at least maxN slots, so the loc of every bucket is unique", () => {
    for (const budget of [16 * MiB, 100 * MiB, 768 * MiB]) {
      const shape = scratchShape(BF16_576, budget, H100_L2)!;
      expect(shape.capacity).toBeGreaterThanOrEqual(shape.maxN);
    }
  });

  it("makes the caches at least 4 x L2 for every MLA row layout when memory allows", () => {
    const layouts: WriteLayout[] = [
      BF16_576,
      copyLayout(528, 128, 4),
      { format: "fp8_e4m3", sourceDtype: "bf16", nopeBytes: 1024, ropeBytes: 128, locBytes: 8, pageSize: 0, scaleRule: null },
      { format: "fp8_ds_mla", sourceDtype: "bf16", nopeBytes: 1024, ropeBytes: 128, locBytes: 8, pageSize: 0, scaleRule: "pow2" },
      V4,
      { format: "fp8_indexer", sourceDtype: "bf16", nopeBytes: 256, ropeBytes: 0, locBytes: 4, pageSize: 64, scaleRule: "amax" },
    ];
    for (const layout of layouts) {
      const budget = budgetFor(1 * GiB);
      const shape = scratchShape(layout, budget, H100_L2)!;
      const { caches, total } = footprint(layout, shape);
      expect([layout.format, shape.layers, shape.maxN]).toEqual([layout.format, 8, SCRATCH_MAX_N]);
      expect(caches).toBeGreaterThanOrEqual(COLD_L2_FACTOR * H100_L2);
      expect(total).toBeLessThanOrEqual(budget);
    }
  });

  it("drops layers before it drops buckets, then halves maxN, as the budget shrinks", () => {
    const seen: string[] = [];
    let last = { layers: 8, maxN: SCRATCH_MAX_N };
    for (let budget = 1536 * MiB; budget >= 64 * 1024; budget = Math.floor(budget * 0.98)) {
      const shape = scratchShape(BF16_576, budget, H100_L2);
      if (shape === null) break;
      expect(footprint(BF16_576, shape).total).toBeLessThanOrEqual(budget);
      // Never more buckets as the budget falls, nor more layers at the same buckets.
      expect(shape.maxN).toBeLessThanOrEqual(last.maxN);
      if (shape.maxN === last.maxN) expect(shape.layers).toBeLessThanOrEqual(last.layers);
      seen.push(`${shape.layers}x${shape.maxN}`);
      last = shape;
    }
    // At n = 65536 it went through 8, 4 and 2 layers before giving up buckets (one layer, whose
    // cache alone must then be 4 x L2, takes about what two do).
    for (const layers of [8, 4, 2]) expect(seen).toContain(`${layers}x${SCRATCH_MAX_N}`);
    expect(seen.some((s) => s.endsWith(`x${SCRATCH_MAX_N / 2}`))).toBe(true);
  });

  it("takes the largest shape that fits: the budget of exactly its footprint gives it again", () => {
    for (const budget of [2 * GiB, 300 * MiB, 100 * MiB, 20 * MiB, 3 * MiB]) {
      const shape = scratchShape(BF16_576, budget, H100_L2)!;
      const exact = footprint(BF16_576, shape).total;
      expect(scratchShape(BF16_576, exact, H100_L2)).toEqual(shape);
      const less = scratchShape(BF16_576, exact - 1, H100_L2);
      expect(less === null || less.maxN < shape.maxN || less.layers < shape.layers).toBe(true);
    }
  });

  it("tunes a 16400-byte row on one layer up to n = 32768 within 1.5 GiB", () => {
    const big = copyLayout(16384, 16, 8);
    const shape = scratchShape(big, SCRATCH_MAX_BYTES, H100_L2)!;
    expect(shape).toMatchObject({ layers: 1, maxN: 32768 });
    expect(footprint(big, shape).total).toBeLessThanOrEqual(SCRATCH_MAX_BYTES);
  });

  it("sizes a paged cache in whole pages", () => {
    for (const budget of [768 * MiB, 40 * MiB, 1 * MiB]) {
      const shape = scratchShape(V4, budget, H100_L2)!;
      expect(shape.capacity % V4.pageSize).toBe(0);
      expect(footprint(V4, shape).total).toBeLessThanOrEqual(budget);
    }
  });

  it("is null when not even one row of one layer fits", () => {
    expect(scratchShape(BF16_576, 0, H100_L2)).toBeNull();
    expect(scratchShape(BF16_576, 1000, H100_L2)).toBeNull();
    expect(scratchShape(V4, 4096, H100_L2)).toBeNull();
  });

  it("fits one row of one layer in just its bytes", () => {
    const one = 1152 + 8 + 1152;
    expect(scratchShape(BF16_576, one, 0)).toEqual({ layers: 1, maxN: 1, capacity: 1 });
  });
});

describe("randomSlots", () => {
  it("gives n distinct slots below the capacity, the same for the same seed", () => {
    const slots = randomSlots(1000, 4096, 7);
    expect(new Set(slots).size).toBe(1000);
    expect(Math.max(...slots)).toBeLessThan(4096);
    expect(Math.min(...slots)).toBeGreaterThanOrEqual(0);
    expect(randomSlots(1000, 4096, 7)).toEqual(slots);
    expect(randomSlots(1000, 4096, 8)).not.toEqual(slots);
  });

  it("is a permutation when n is the capacity", () => {
    expect([...randomSlots(64, 64, 3)].sort((a, b) => a - b)).toEqual(Array.from({ length: 64 }, (_, i) => i));
  });
});

describe("widen", () => {
  it("turns int32 slots into the same int64 values", () => {
    const slots = Int32Array.from([0, 1, 65535, 2 ** 31 - 1]);
    expect([...widen(slots)]).toEqual([0n, 1n, 65535n, 2n ** 31n - 1n]);
  });
});
