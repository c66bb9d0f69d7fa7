import { describe, expect, it } from "bun:test";
import { Random } from "../../autotune/random.ts";
import { randomSlots } from "../../autotune/scratch.ts";

const draw = (r: Random, count: number) => Array.from({ length: count }, () => r.next32());

describe("Random", () => {
  it("gives the same stream for the same seed and different streams for neighbouring seeds", () => {
    expect(draw(new Random(42), 64)).toEqual(draw(new Random(42), 64));
    const streams = [0, 1, 2, 3, -1, 2 ** 31, 0x9e3779b9].map((seed) => draw(new Random(seed), 8).join(","));
    expect(new Set(streams).size).toBe(streams.length);
  });

  it("draws 32-bit unsigned integers that are never 0, whatever the seed", () => {
    for (const seed of [0, 1, -0x9e3779b9, 0x61c88647]) {
      for (const x of draw(new Random(seed), 1000)) {
        expect(Number.isInteger(x) && x > 0 && x < 2 ** 32).toBe(true);
      }
    }
  });

  it("keeps below(n) in [0, n) and reaches every value of a small range", () => {
    const r = new Random(7);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const v = r.below(5);
      expect(Number.isInteger(v) && v >= 0 && v < 5).toBe(true);
      seen.add(v);
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4]);
    expect([r.chance(0), r.chance(1)]).toEqual([false, true]);
    expect(["a", "b", "c"]).toContain(r.pick(["a", "b", "c"]));
  });

  it("fills buffers of any length and offset with bytes that are not all alike", () => {
    const r = new Random(9);
    for (const length of [0, 1, 3, 4, 7, 4096 + 5]) expect(r.bytes(length).length).toBe(length);
    const backing = new Uint8Array(64).fill(0xee);
    const inner = r.fill(backing.subarray(3, 61));
    expect(inner.length).toBe(58);
    expect(new Set(inner).size).toBeGreaterThan(1);
    expect([...backing.subarray(0, 3), ...backing.subarray(61)]).toEqual([0xee, 0xee, 0xee, 0xee, 0xee, 0xee]);
  });

  it("draws distinct slots within the capacity, all of them when n is the capacity", () => {
    const r = new Random(11);
    const some = r.uniqueSlots(300, 1000);
    expect(new Set(some).size).toBe(300);
    expect(some.every((s) => Number.isInteger(s) && s >= 0 && s < 1000)).toBe(true);
    expect([...r.uniqueSlots(50, 50)].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(r.uniqueSlots(0, 10)).toEqual([]);
    expect(() => r.uniqueSlots(11, 10)).toThrow(RangeError);
  });
});

describe("randomSlots", () => {
  it("is the seeded draw of distinct slots, as int32", () => {
    const slots = randomSlots(1000, 4096, 7);
    expect(slots).toBeInstanceOf(Int32Array);
    expect(Array.from(slots)).toEqual(new Random(7).uniqueSlots(1000, 4096));
    expect(new Set(slots).size).toBe(1000);
  });
});
