/**
 * setMlaKvBuffer on a real GPU, byte for byte against the host reference, over the whole cache:
 * rows not named in loc and the bytes past nope+rope must keep the poison.
 */
import { describe, expect, it } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  allocTensor,
  checkErrors,
  fromHost,
  MlaKvError,
  setMlaKvBuffer,
  setWriteDefaults,
  Stream,
  supportsPath,
  type DeviceTensor,
  type DType,
  type Path,
  type RowsPerWarp,
  type Warps,
} from "../../mod.ts";
import { asBytes, firstDifference, gpuSuiteName, locTensor, poison, POISON, probeGpu, referenceWrite, Rng } from "../helpers/gpu.ts";

const gpu = probeGpu();
const SEED = Number(process.env.MLA_KV_TEST_SEED ?? 20261124);

interface Layout {
  dtype: DType;
  nope: number; // elements
  rope: number;
}
const LAYOUTS: Layout[] = [
  ...(["bf16", "fp16"] as const).flatMap((dtype) =>
    [[512, 64], [512, 32], [256, 64], [128, 64], [528, 64]].map(([nope, rope]) => ({ dtype, nope: nope!, rope: rope! })),
  ),
  { dtype: "u8", nope: 528, rope: 128 },
];
const NS = [1, 7, 64, 257, 768, 1024, 4096, 16384];
const WARPS: Warps[] = [1, 2, 4, 8, 16];
const ROWS: RowsPerWarp[] = [1, 2, 4];
const bytesOf = (dtype: DType) => (dtype === "bf16" || dtype === "fp16" ? 2 : 1);
const label = (l: Layout) => `${l.dtype} ${l.nope}+${l.rope}`;

/** A device tensor holding `bytes` viewed as `dtype`, shape [rows, cols]. */
function upload(dtype: DType, bytes: Uint8Array, rows: number, cols: number): DeviceTensor {
  const data = dtype === "u8" ? bytes : new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return fromHost(data as never, dtype, [rows, cols]);
}

function downloadBytes(t: DeviceTensor): Uint8Array {
  return asBytes(t.download() as ArrayBufferView);
}

interface Case {
  layout: Layout;
  n: number;
  capacity: number;
  cache: DeviceTensor;
  loc: DeviceTensor;
  kNope: DeviceTensor;
  kRope: DeviceTensor;
  want: Uint8Array;
  rowBytes: number;
  free(): void;
}

/** Random sources and unique random slots for one (layout, loc dtype, n); the expected cache. */
function makeCase(layout: Layout, locDtype: "i32" | "i64", n: number, rng: Rng): Case {
  const eb = bytesOf(layout.dtype);
  const nopeBytes = layout.nope * eb;
  const ropeBytes = layout.rope * eb;
  const rowBytes = nopeBytes + ropeBytes;
  const capacity = n + 64 + rng.below(64); // rows the write never names must stay poisoned
  const slots = rng.uniqueSlots(n, capacity);
  const nope = rng.bytes(n * nopeBytes);
  const rope = rng.bytes(n * ropeBytes);
  const cache = allocTensor(layout.dtype, [capacity, 1, layout.nope + layout.rope]);
  const kNope = upload(layout.dtype, nope, n, layout.nope);
  const kRope = upload(layout.dtype, rope, n, layout.rope);
  const loc = locTensor(locDtype, slots);
  const want = referenceWrite({
    cache: new Uint8Array(capacity * rowBytes).fill(POISON),
    cacheRowStride: rowBytes,
    capacity,
    loc: slots,
    nope,
    nopeRowStride: nopeBytes,
    nopeBytes,
    rope,
    ropeRowStride: ropeBytes,
    ropeBytes,
  });
  return {
    layout, n, capacity, cache, loc, kNope, kRope, want, rowBytes,
    free() {
      for (const t of [cache, loc, kNope, kRope]) t.free();
    },
  };
}

function runAndCompare(c: Case, options: { path: Path; warps?: Warps; rowsPerWarp: RowsPerWarp }): string | null {
  poison(c.cache, c.capacity * c.rowBytes);
  setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, options);
  const diff = firstDifference(downloadBytes(c.cache), c.want, c.rowBytes);
  return diff && `${label(c.layout)} n=${c.n} ${options.path} w${options.warps ?? "-"} r${options.rowsPerWarp}: ${diff}`;
}

/**
 * One row of each size the specialized and spread kernels are compiled for: 1152 (bf16 512+64),
 * 1024 (bf16 448+64), 656 (u8 528+128), 584 (u8 576+8, 8-byte vectors) and 576 (u8 512+64).
 */
const SPECIALIZED_LAYOUTS: Layout[] = [
  { dtype: "bf16", nope: 512, rope: 64 },
  { dtype: "bf16", nope: 448, rope: 64 },
  { dtype: "u8", nope: 528, rope: 128 },
  { dtype: "u8", nope: 576, rope: 8 },
  { dtype: "u8", nope: 512, rope: 64 },
];

describe.skipIf(!gpu.ok)(gpuSuiteName("setMlaKvBuffer"), () => {
  const tma = gpu.ok && supportsPath(0, "tma");
  const paths: Path[] = tma ? ["vector", "tma"] : ["vector"];

  describe("writes every layout byte for byte", () => {
    for (const layout of LAYOUTS) {
      for (const locDtype of ["i32", "i64"] as const) {
        it(`with ${label(layout)} rows and ${locDtype} loc, at every n, on every path and warp count`, () => {
          const rng = new Rng(SEED + layout.nope * 7 + layout.rope + (locDtype === "i64" ? 1 : 0));
          const failures: string[] = [];
          let cases = 0;
          for (const n of NS) {
            const c = makeCase(layout, locDtype, n, rng);
            try {
              paths.forEach((path, p) =>
                WARPS.forEach((warps, w) => {
                  const rowsPerWarp = ROWS[(w + p) % ROWS.length]!;
                  const diff = runAndCompare(c, { path, warps, rowsPerWarp });
                  ++cases;
                  if (diff) failures.push(diff);
                }),
              );
            } finally {
              c.free();
            }
          }
          checkErrors(0);
          expect(failures).toEqual([]);
          expect(cases).toBe(NS.length * paths.length * WARPS.length);
        });
      }
    }
  });

  describe("writes every specialized row size byte for byte on the specialized and spread paths", () => {
    for (const layout of SPECIALIZED_LAYOUTS) {
      for (const locDtype of ["i32", "i64"] as const) {
        it(`with ${label(layout)} rows and ${locDtype} loc, at every n, every warp count and rows per warp`, () => {
          const rng = new Rng(SEED + 31 * layout.nope + layout.rope + (locDtype === "i64" ? 1 : 0));
          const failures: string[] = [];
          let cases = 0;
          for (const n of NS) {
            const c = makeCase(layout, locDtype, n, rng);
            try {
              WARPS.forEach((warps, w) => {
                const diff = runAndCompare(c, { path: "specialized", warps, rowsPerWarp: ROWS[w % ROWS.length]! });
                ++cases;
                if (diff) failures.push(diff);
              });
              for (const rowsPerWarp of ROWS) {
                const diff = runAndCompare(c, { path: "spread", rowsPerWarp });
                ++cases;
                if (diff) failures.push(diff);
              }
            } finally {
              c.free();
            }
          }
          checkErrors(0);
          expect(failures).toEqual([]);
          expect(cases).toBe(NS.length * (WARPS.length + ROWS.length));
        });
      }
    }
  });

  it("writes rows whose sizes allow only 4-, 2- or 1-byte vectors, on the vector path", () => {
    // fp16 6+2 (12 + 4 bytes: 4-byte vectors), bf16 7+3 (14 + 6: 2-byte), u8 13+5 (1-byte).
    const odd: Layout[] = [{ dtype: "fp16", nope: 6, rope: 2 }, { dtype: "bf16", nope: 7, rope: 3 }, { dtype: "u8", nope: 13, rope: 5 }];
    const rng = new Rng(SEED + 12);
    const failures: string[] = [];
    for (const layout of odd)
      for (const n of [1, 33, 1000]) {
        const c = makeCase(layout, "i64", n, rng);
        try {
          for (const warps of [1, 4, 16] as Warps[])
            for (const rowsPerWarp of ROWS) {
              const diff = runAndCompare(c, { path: "vector", warps, rowsPerWarp });
              if (diff) failures.push(diff);
            }
          if (tma) expect(() => setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { path: "tma" })).toThrow(MlaKvError);
        } finally {
          c.free();
        }
      }
    expect(failures).toEqual([]);
  });

  it("writes the same bytes with 1, 2 and 4 rows per warp on every path", () => {
    const rng = new Rng(SEED + 1);
    const failures: string[] = [];
    for (const n of [5, 333, 4099]) {
      const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i64", n, rng);
      try {
        for (const path of paths)
          for (const rowsPerWarp of ROWS)
            for (const warps of [1, 16] as Warps[]) {
              const diff = runAndCompare(c, { path, warps, rowsPerWarp });
              if (diff) failures.push(diff);
            }
      } finally {
        c.free();
      }
    }
    expect(failures).toEqual([]);
  });

  it("writes the same bytes with programmatic dependent launch on and off, eagerly and in a graph", () => {
    const rng = new Rng(SEED + 11);
    const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i64", 2500, rng);
    using stream = Stream.create(0);
    try {
      for (const pdl of [true, false]) {
        for (const path of paths) {
          poison(c.cache, c.capacity * c.rowBytes);
          setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { stream, path, pdl });
          stream.synchronize();
          expect(firstDifference(downloadBytes(c.cache), c.want, c.rowBytes)).toBeNull();
          poison(c.cache, c.capacity * c.rowBytes);
          using graph = stream.capture(() => {
            for (let k = 0; k < 3; ++k) setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { stream, path, pdl });
          });
          graph.replay(stream);
          stream.synchronize();
          expect(firstDifference(downloadBytes(c.cache), c.want, c.rowBytes)).toBeNull();
        }
      }
    } finally {
      c.free();
    }
  });

  it("chooses a path on its own and writes the same bytes (auto dispatch)", () => {
    const rng = new Rng(SEED + 2);
    for (const n of [1, 300, 5000]) {
      const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i32", n, rng);
      try {
        poison(c.cache, c.capacity * c.rowBytes);
        setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope);
        expect(firstDifference(downloadBytes(c.cache), c.want, c.rowBytes)).toBeNull();
      } finally {
        c.free();
      }
    }
  });

  it("launches nothing and changes nothing when n is 0", () => {
    using cache = allocTensor("bf16", [16, 576]);
    poison(cache, 16 * 1152);
    using kNope = allocTensor("bf16", [1, 512]);
    using kRope = allocTensor("bf16", [1, 64]);
    using loc = allocTensor("i64", [1]);
    setMlaKvBuffer(cache, loc.narrow(0, 0, 0), kNope.narrow(0, 0, 0), kRope.narrow(0, 0, 0));
    expect(downloadBytes(cache).every((b) => b === POISON)).toBe(true);
  });

  describe("with loc values that must not be written", () => {
    for (const path of paths) {
      it(`skips negative loc as padding on the ${path} path`, () => {
        const rng = new Rng(SEED + 3);
        const n = 200;
        const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i64", n, rng);
        try {
          const slots = Array.from(c.loc.download() as BigInt64Array, Number);
          for (let i = 0; i < n; i += 3) slots[i] = -1 - i;
          using padded = locTensor("i64", slots);
          poison(c.cache, c.capacity * c.rowBytes);
          setMlaKvBuffer(c.cache, padded, c.kNope, c.kRope, { path, warps: 4, rowsPerWarp: 2 });
          const want = new Uint8Array(c.capacity * c.rowBytes).fill(POISON);
          const nope = downloadBytes(c.kNope), rope = downloadBytes(c.kRope);
          referenceWrite({ cache: want, cacheRowStride: c.rowBytes, capacity: c.capacity, loc: slots, nope, nopeRowStride: 1024, nopeBytes: 1024, rope, ropeRowStride: 128, ropeBytes: 128 });
          expect(firstDifference(downloadBytes(c.cache), want, c.rowBytes)).toBeNull();
          checkErrors(0); // padding is not an error
        } finally {
          c.free();
        }
      });

      it(`skips the reserved slot, per call and by default, keeping its contents, on the ${path} path`, () => {
        const rng = new Rng(SEED + 5);
        const n = 300;
        const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i64", n, rng);
        try {
          const slots = Array.from(c.loc.download() as BigInt64Array, Number);
          const reserved = slots[10]!; // a slot rows really name: row 10, and padded rows below
          for (let i = 0; i < n; i += 7) slots[i] = reserved;
          using padded = locTensor("i64", slots);
          const want = new Uint8Array(c.capacity * c.rowBytes).fill(POISON);
          referenceWrite({ cache: want, cacheRowStride: c.rowBytes, capacity: c.capacity, loc: slots.map((s) => (s === reserved ? -1 : s)),
            nope: downloadBytes(c.kNope), nopeRowStride: 1024, nopeBytes: 1024, rope: downloadBytes(c.kRope), ropeRowStride: 128, ropeBytes: 128 });
          poison(c.cache, c.capacity * c.rowBytes);
          setMlaKvBuffer(c.cache, padded, c.kNope, c.kRope, { path, warps: 4, rowsPerWarp: 4, reservedSlot: reserved });
          expect(firstDifference(downloadBytes(c.cache), want, c.rowBytes)).toBeNull();
          const previous = setWriteDefaults({ reservedSlot: reserved });
          try {
            poison(c.cache, c.capacity * c.rowBytes);
            setMlaKvBuffer(c.cache, padded, c.kNope, c.kRope, { path, warps: 8, rowsPerWarp: 1 });
            expect(firstDifference(downloadBytes(c.cache), want, c.rowBytes)).toBeNull();
          } finally {
            setWriteDefaults(previous);
          }
          checkErrors(0); // a reserved slot is not an error
        } finally {
          c.free();
        }
      });

      it(`never writes loc >= capacity on the ${path} path, reports it once with the count and first index, then is clean again`, () => {
        const rng = new Rng(SEED + 4);
        const n = 100;
        const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i32", n, rng);
        try {
          const slots = Array.from(c.loc.download() as Int32Array);
          slots[17] = c.capacity; // the first row past the end
          slots[60] = c.capacity + 1000;
          slots[99] = 2 ** 31 - 1;
          using bad = locTensor("i32", slots);
          poison(c.cache, c.capacity * c.rowBytes);
          setMlaKvBuffer(c.cache, bad, c.kNope, c.kRope, { path, warps: 2, rowsPerWarp: 1 });
          let thrown: unknown;
          try {
            checkErrors(0);
          } catch (error) {
            thrown = error;
          }
          expect(thrown).toBeInstanceOf(MlaKvError);
          expect((thrown as MlaKvError).code).toBe("OUT_OF_RANGE_LOC");
          expect((thrown as MlaKvError).message).toContain("3 row");
          expect((thrown as MlaKvError).message).toContain("17");
          const want = new Uint8Array(c.capacity * c.rowBytes).fill(POISON);
          referenceWrite({ cache: want, cacheRowStride: c.rowBytes, capacity: c.capacity, loc: slots, nope: downloadBytes(c.kNope), nopeRowStride: 1024, nopeBytes: 1024, rope: downloadBytes(c.kRope), ropeRowStride: 128, ropeBytes: 128 });
          expect(firstDifference(downloadBytes(c.cache), want, c.rowBytes)).toBeNull();
          // The word was cleared when reported: a clean write afterwards does not throw.
          setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { path, warps: 2, rowsPerWarp: 1 });
          expect(() => checkErrors(0)).not.toThrow();
        } finally {
          c.free();
        }
      });
    }

    it("reports out-of-range loc at the next stream synchronisation too", () => {
      using stream = Stream.create(0);
      using cache = allocTensor("bf16", [8, 576]);
      using kNope = fromHost(new Uint16Array(512).fill(7), "bf16", [1, 512]);
      using kRope = fromHost(new Uint16Array(64).fill(9), "bf16", [1, 64]);
      using loc = fromHost(BigInt64Array.from([8n]), "i64", [1]);
      setMlaKvBuffer(cache, loc, kNope, kRope, { stream });
      expect(() => stream.synchronize()).toThrow(/loc/);
      expect(() => checkErrors(0)).not.toThrow();
    });
  });

  describe("with strided and viewed sources and wide cache rows", () => {
    for (const path of paths) {
      it(`reads nope and rope as column slices of one wider tensor on the ${path} path`, () => {
        // The engine's pattern: kNope = kv[:, :512], kRope = kv[:, 512:576] of a [n, 576 + 64] tensor.
        const rng = new Rng(SEED + 5);
        const n = 1000, width = 640, capacity = 1500;
        const src = rng.bytes(n * width * 2);
        using kv = upload("bf16", src, n, width);
        const kNope = kv.narrow(1, 0, 512);
        const kRope = kv.narrow(1, 512, 64);
        const slots = rng.uniqueSlots(n, capacity);
        using loc = locTensor("i64", slots);
        using cache = allocTensor("bf16", [capacity, 576]);
        poison(cache, capacity * 1152);
        setMlaKvBuffer(cache, loc, kNope, kRope, { path, warps: 8, rowsPerWarp: 1 });
        const want = referenceWrite({ cache: new Uint8Array(capacity * 1152).fill(POISON), cacheRowStride: 1152, capacity, loc: slots, nope: src, nopeRowStride: width * 2, nopeBytes: 1024, rope: src.subarray(1024), ropeRowStride: width * 2, ropeBytes: 128 });
        expect(firstDifference(downloadBytes(cache), want, 1152)).toBeNull();
      });

      it(`leaves the tail of cache rows wider than nope+rope untouched on the ${path} path`, () => {
        const rng = new Rng(SEED + 6);
        const n = 513, capacity = 700, rowElems = 576 + 64; // 128 tail bytes per row
        const nope = rng.bytes(n * 1024), rope = rng.bytes(n * 128);
        using kNope = upload("bf16", nope, n, 512);
        using kRope = upload("bf16", rope, n, 64);
        const slots = rng.uniqueSlots(n, capacity);
        using loc = locTensor("i32", slots);
        using cache = allocTensor("bf16", [capacity, rowElems]);
        poison(cache, capacity * rowElems * 2);
        setMlaKvBuffer(cache, loc, kNope, kRope, { path, warps: 4, rowsPerWarp: 4 });
        const want = referenceWrite({ cache: new Uint8Array(capacity * rowElems * 2).fill(POISON), cacheRowStride: rowElems * 2, capacity, loc: slots, nope, nopeRowStride: 1024, nopeBytes: 1024, rope, ropeRowStride: 128, ropeBytes: 128 });
        expect(firstDifference(downloadBytes(cache), want, rowElems * 2)).toBeNull();
      });
    }

    it("accepts [n, 1, d] views of the sources", () => {
      const rng = new Rng(SEED + 7);
      const n = 77, capacity = 90;
      const nope = rng.bytes(n * 1024), rope = rng.bytes(n * 128);
      using kNope = upload("bf16", nope, n, 512);
      using kRope = upload("bf16", rope, n, 64);
      const slots = rng.uniqueSlots(n, capacity);
      using loc = locTensor("i64", slots);
      using cache = allocTensor("bf16", [capacity, 1, 576]);
      poison(cache, capacity * 1152);
      setMlaKvBuffer(cache, loc, kNope.view([n, 1, 512]), kRope.view([n, 1, 64]));
      const want = referenceWrite({ cache: new Uint8Array(capacity * 1152).fill(POISON), cacheRowStride: 1152, capacity, loc: slots, nope, nopeRowStride: 1024, nopeBytes: 1024, rope, ropeRowStride: 128, ropeBytes: 128 });
      expect(firstDifference(downloadBytes(cache), want, 1152)).toBeNull();
    });

    it("falls back to the vector path for sources that are not 16-byte aligned, and refuses to force TMA there", () => {
      const rng = new Rng(SEED + 8);
      const n = 2000, width = 580, capacity = 2100; // a 1160-byte row stride: 8-byte aligned only
      const src = rng.bytes(n * width * 2);
      using kv = upload("bf16", src, n, width);
      const kNope = kv.narrow(1, 4, 512); // starts 8 bytes in
      const kRope = kv.narrow(1, 516, 64);
      const slots = rng.uniqueSlots(n, capacity);
      using loc = locTensor("i64", slots);
      using cache = allocTensor("bf16", [capacity, 576]);
      poison(cache, capacity * 1152);
      setMlaKvBuffer(cache, loc, kNope, kRope); // auto: must not pick TMA
      const want = referenceWrite({ cache: new Uint8Array(capacity * 1152).fill(POISON), cacheRowStride: 1152, capacity, loc: slots, nope: src.subarray(8), nopeRowStride: width * 2, nopeBytes: 1024, rope: src.subarray(1032), ropeRowStride: width * 2, ropeBytes: 128 });
      expect(firstDifference(downloadBytes(cache), want, 1152)).toBeNull();
      if (tma) {
        expect(() => setMlaKvBuffer(cache, loc, kNope, kRope, { path: "tma" })).toThrow(MlaKvError);
      }
    });
  });

  describe("on streams and in CUDA graphs", () => {
    it("captures writes into a graph whose replays write the same bytes", () => {
      const rng = new Rng(SEED + 9);
      const c = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i64", 3000, rng);
      using stream = Stream.create(0);
      try {
        poison(c.cache, c.capacity * c.rowBytes);
        stream.synchronize();
        using graph = stream.capture(() => {
          setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { stream });
        });
        // Nothing ran during capture: the cache still holds only poison.
        expect(downloadBytes(c.cache).every((b) => b === POISON)).toBe(true);
        graph.replay(stream);
        stream.synchronize();
        expect(firstDifference(downloadBytes(c.cache), c.want, c.rowBytes)).toBeNull();
        poison(c.cache, c.capacity * c.rowBytes);
        graph.replay(stream);
        graph.replay(stream);
        stream.synchronize();
        expect(firstDifference(downloadBytes(c.cache), c.want, c.rowBytes)).toBeNull();
      } finally {
        c.free();
      }
    });

    it("captures the first write of a layout with no profile without tuning or synchronising, and tunes at the next eager call", () => {
      // 500 + 60 bf16 elements: a layout no other test writes, so no profile exists for it yet.
      const layout: Layout = { dtype: "bf16", nope: 500, rope: 60 };
      const key = "1000+120/i32";
      const stored = () => {
        const dir = process.env.MLA_KV_CACHE_DIR!;
        return readdirSync(dir).filter((f) => f.endsWith(".json")).some((f) => key in (JSON.parse(readFileSync(join(dir, f), "utf8")).layouts ?? {}));
      };
      expect(stored()).toBe(false);
      const c = makeCase(layout, "i32", 2000, new Rng(SEED + 13));
      using stream = Stream.create(0);
      try {
        poison(c.cache, c.capacity * c.rowBytes);
        checkErrors(0);
        using graph = stream.capture(() => setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { stream }));
        expect(stored()).toBe(false); // nothing was tuned inside the capture
        graph.replay(stream);
        stream.synchronize();
        expect(firstDifference(downloadBytes(c.cache), c.want, c.rowBytes)).toBeNull();
        setMlaKvBuffer(c.cache, c.loc, c.kNope, c.kRope, { stream }); // eager: now it tunes
        stream.synchronize();
        expect(stored()).toBe(true);
      } finally {
        c.free();
      }
    });

    it("gives the right bytes when two streams write two caches at once", () => {
      const rng = new Rng(SEED + 10);
      const a = makeCase({ dtype: "bf16", nope: 512, rope: 64 }, "i64", 8000, rng);
      const b = makeCase({ dtype: "u8", nope: 528, rope: 128 }, "i32", 8000, rng);
      using s1 = Stream.create(0);
      using s2 = Stream.create(0);
      try {
        poison(a.cache, a.capacity * a.rowBytes);
        poison(b.cache, b.capacity * b.rowBytes);
        checkErrors(0);
        for (let k = 0; k < 4; ++k) {
          setMlaKvBuffer(a.cache, a.loc, a.kNope, a.kRope, { stream: s1 });
          setMlaKvBuffer(b.cache, b.loc, b.kNope, b.kRope, { stream: s2 });
        }
        s1.synchronize();
        s2.synchronize();
        expect(firstDifference(downloadBytes(a.cache), a.want, a.rowBytes)).toBeNull();
        expect(firstDifference(downloadBytes(b.cache), b.want, b.rowBytes)).toBeNull();
      } finally {
        a.free();
        b.free();
      }
    });
  });
});
