/**
 * Quantize-on-write (cuda/quantize_fp8.cuh) on a real GPU, byte for byte against the plain host
 * reference of the conversion (tests/helpers/fp8_reference.ts), over the whole poisoned cache:
 * rows not named in loc, the reserved slot and the bytes past the format's row keep the poison.
 *
 * Sources mix ordinary activations with every awkward value: NaN (both signs, payloads), ±inf,
 * subnormals, values past the fp8 range, -0, all-zero tiles, and raw random bit patterns.
 */
import { describe, expect, it } from "bun:test";
import {
  allocTensor,
  checkErrors,
  fromHost,
  MlaKvError,
  setMlaKvBuffer,
  Stream,
  supportsPath,
  type DeviceTensor,
  type Path,
  type RowsPerWarp,
  type SetMlaKvBufferOptions,
  type Warps,
} from "../../mod.ts";
import { asBytes, firstDifference, gpuSuiteName, locTensor, poison, POISON, probeGpu, Rng } from "../helpers/gpu.ts";
import { f32ToBf16Bits, quantizeDsMlaRow, quantizeFlatRow, type SourceFormat } from "../helpers/fp8_reference.ts";

const gpu = probeGpu();
const SEED = Number(process.env.MLA_KV_TEST_SEED ?? 20261124);

type Format = "fp8_e4m3" | "fp8_e5m2" | "fp8_ds_mla";
const FORMATS: Format[] = ["fp8_e4m3", "fp8_e5m2", "fp8_ds_mla"];
const SOURCES: SourceFormat[] = ["bf16", "fp16"];
const SCALES = [1, 0.5, Math.fround(0.0173), Math.fround(3.7), Math.fround(1 / 448)];

// ---- source values ------------------------------------------------------------------------------

const f16 = new Float16Array(1);
const f16Bits = new Uint16Array(f16.buffer);
/** The 16-bit pattern of x in `source` (round to nearest even). */
function encode16(x: number, source: SourceFormat): number {
  if (source === "bf16") return f32ToBf16Bits(Math.fround(x), x < 0 || Object.is(x, -0) ? 1 : 0);
  f16[0] = x;
  return f16Bits[0]!;
}

const SPECIALS: Record<SourceFormat, number[]> = {
  // NaN (quiet, signalling-looking payload, negative), ±inf, ±0, the smallest and largest
  // subnormals, the largest finite value, and a value between e4m3's 448 and the next step.
  bf16: [0x7fc0, 0x7f81, 0xffc1, 0x7f80, 0xff80, 0x0000, 0x8000, 0x0001, 0x807f, 0x7f7f, 0x43e8],
  fp16: [0x7e00, 0x7c01, 0xfe01, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0x5f40],
};

/** One source row of `count` elements, by a recipe the generator picks. */
function sourceRow(rng: Rng, count: number, source: SourceFormat): Uint16Array {
  const row = new Uint16Array(count);
  const recipe = rng.below(6);
  const activation = (spread: number) => {
    const magnitude = (1 + rng.below(1 << 20) / (1 << 20)) * 2 ** (rng.below(2 * spread + 1) - spread);
    return rng.below(2) ? -magnitude : magnitude;
  };
  for (let k = 0; k < count; ++k) {
    switch (recipe) {
      case 0: // raw random patterns: every class of value, in proportion to its share of codes
        row[k] = rng.below(0x10000);
        break;
      case 1: // activations around 1
        row[k] = encode16(activation(6), source);
        break;
      case 2: // a wide range, into fp8 subnormals and past its largest value
        row[k] = encode16(activation(source === "fp16" ? 14 : 40), source);
        break;
      case 3: // activations with specials sprinkled in
        row[k] = rng.below(8) === 0 ? SPECIALS[source][rng.below(SPECIALS[source].length)]! : encode16(activation(4), source);
        break;
      case 4: // source subnormals and zeros only
        row[k] = (rng.below(2) ? 0x8000 : 0) | rng.below(source === "bf16" ? 0x80 : 0x400);
        break;
      default: // zero tiles (±0) between ordinary ones; with fp8_ds_mla's 128-element tiles
        row[k] = Math.floor(k / 128) % 2 === 0 ? (rng.below(2) ? 0x8000 : 0) : encode16(activation(3), source);
    }
  }
  return row;
}

// ---- one case -------------------------------------------------------------------------------------

interface CaseShape {
  format: Format;
  source: SourceFormat;
  n: number;
  loc: "i32" | "i64";
  /** Extra elements of source row stride: > 0 makes strided views (and, when odd, unaligned ones). */
  sourcePad: number;
  /** Extra bytes of cache row: 0 gives rows exactly the format's size. */
  cachePad: number;
  paged: boolean;
  scale: number;
  reservedSlot: number | null;
  options: SetMlaKvBufferOptions;
  /** Flat formats only; default 512 + 64. */
  parts?: [number, number];
}

/** Runs one write and returns the first difference from the reference, or null. */
function runCase(shape: CaseShape, rng: Rng): string | null {
  const [nopeElems, ropeElems] = shape.parts ?? [512, 64];
  const rowElems = nopeElems + ropeElems;
  const rowBytes = shape.format === "fp8_ds_mla" ? 656 : rowElems;
  const width = rowBytes + shape.cachePad;
  const capacity = shape.n + 48 + rng.below(32);
  const pageSize = 16;
  const pages = Math.ceil(capacity / pageSize);
  const slots = pages * pageSize;
  const cacheDtype = shape.format === "fp8_ds_mla" ? "u8" : shape.format;
  const owned: DeviceTensor[] = [];
  const own = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  try {
    const cache = own(allocTensor(cacheDtype, shape.paged ? [pages, pageSize, width] : [slots, width]));
    poison(cache, slots * width);
    const stride = rowElems + shape.sourcePad;
    const wide = new Uint16Array(shape.n * stride);
    for (let i = 0; i < shape.n; ++i) wide.set(sourceRow(rng, rowElems, shape.source), i * stride);
    const src = own(fromHost(wide, shape.source, [shape.n, stride]));
    // Nope and rope as two views of one wider tensor, as an engine slices its projection output;
    // with an odd pad the rope view starts off a 16-byte boundary.
    const kNope = src.narrow(1, 0, nopeElems);
    const kRope = src.narrow(1, nopeElems + shape.sourcePad, ropeElems);
    // Unique slots, two padding rows, and (when there is one) the reserved slot named once.
    const loc = rng.uniqueSlots(shape.n, slots);
    if (shape.n > 4) {
      loc[1] = -1;
      loc[3] = -7;
      if (shape.reservedSlot !== null) loc[2] = shape.reservedSlot;
    }
    const locT = own(locTensor(shape.loc, loc));

    const want = new Uint8Array(slots * width).fill(POISON);
    for (let i = 0; i < shape.n; ++i) {
      const slot = loc[i]!;
      if (slot < 0 || slot === shape.reservedSlot) continue;
      const nope = wide.subarray(i * stride, i * stride + nopeElems);
      const rope = wide.subarray(i * stride + nopeElems + shape.sourcePad, i * stride + rowElems + shape.sourcePad);
      const row = shape.format === "fp8_ds_mla"
        ? quantizeDsMlaRow(nope, rope, shape.source)
        : quantizeFlatRow(nope, rope, shape.source, shape.format === "fp8_e4m3" ? "e4m3" : "e5m2", shape.scale);
      want.set(row, slot * width);
    }

    const options: SetMlaKvBufferOptions = {
      ...shape.options,
      ...(shape.format === "fp8_ds_mla" ? { format: "fp8_ds_mla" } : { scale: shape.scale }),
      reservedSlot: shape.reservedSlot,
    };
    setMlaKvBuffer(cache, locT, kNope, kRope, options);
    checkErrors(0);
    return firstDifference(asBytes(cache.download() as ArrayBufferView), want, width);
  } finally {
    for (const t of owned) t.free();
  }
}

const describeCase = (s: CaseShape) =>
  `${s.format}${s.parts ? ` ${s.parts.join("+")}` : ""} from ${s.source}, n=${s.n}, ${s.loc} loc, source pad ${s.sourcePad}, cache pad ${s.cachePad}${s.paged ? ", paged" : ""}, scale ${s.scale}, reserved ${s.reservedSlot}, ${JSON.stringify(s.options)}`;

describe.skipIf(!gpu.ok)(gpuSuiteName("quantize-on-write"), () => {
  const tma = gpu.ok && supportsPath(0, "tma");
  const paths: Path[] = tma ? ["vector", "tma"] : ["vector"];

  it("writes every format from bf16 and fp16 byte-exactly on both paths, for every launch shape", () => {
    const rng = new Rng(SEED);
    let cases = 0;
    for (const format of FORMATS) {
      for (const source of SOURCES) {
        for (const path of paths) {
          for (const [warps, rowsPerWarp] of [[1, 1], [4, 2], [8, 1], [16, 4], [2, 4]] as Array<[Warps, RowsPerWarp]>) {
            for (const n of [1, 7, 300]) {
              const shape: CaseShape = {
                format, source, n, loc: n % 2 ? "i64" : "i32", sourcePad: 0, cachePad: 0, paged: warps === 8,
                scale: SCALES[rng.below(SCALES.length)]!, reservedSlot: null, options: { path, warps, rowsPerWarp },
              };
              expect(runCase(shape, rng), describeCase(shape)).toBeNull();
              ++cases;
            }
          }
        }
      }
    }
    expect(cases).toBe(FORMATS.length * SOURCES.length * paths.length * 5 * 3);
  }, 300_000);

  it("writes flat rows of other shapes, up to two nope chunks and two rope pairs a lane", () => {
    const rng = new Rng(SEED + 4);
    for (const parts of [[1024, 128], [256, 0], [0, 64], [16, 2], [528, 62], [992, 126]] as Array<[number, number]>) {
      for (const path of paths) {
        // TMA needs the row to be a multiple of 16 bytes; the others run on the vector path only.
        if (path === "tma" && (parts[0] + parts[1]) % 16 !== 0) continue;
        const shape: CaseShape = {
          format: rng.below(2) ? "fp8_e4m3" : "fp8_e5m2", source: rng.below(2) ? "bf16" : "fp16", n: 130, loc: "i32", sourcePad: 0,
          cachePad: 0, paged: false, scale: SCALES[rng.below(SCALES.length)]!, reservedSlot: null, options: { path, warps: 4, rowsPerWarp: 4 }, parts,
        };
        expect(runCase(shape, rng), describeCase(shape)).toBeNull();
      }
    }
  }, 120_000);

  it("reads unaligned and strided sources, and writes caches whose rows allow no wide stores", () => {
    const rng = new Rng(SEED + 1);
    for (const format of FORMATS) {
      for (const [sourcePad, cachePad] of [[3, 0], [8, 0], [0, 1], [0, 8], [5, 3]] as Array<[number, number]>) {
        for (const path of paths) {
          // TMA stores whole rows in bulk: the cache row must stay a multiple of 16 bytes.
          if (path === "tma" && cachePad % 16 !== 0) continue;
          const shape: CaseShape = {
            format, source: rng.below(2) ? "bf16" : "fp16", n: 257, loc: "i64", sourcePad, cachePad, paged: false,
            scale: SCALES[rng.below(SCALES.length)]!, reservedSlot: null, options: { path, warps: 4, rowsPerWarp: 2 },
          };
          expect(runCase(shape, rng), describeCase(shape)).toBeNull();
        }
      }
    }
  }, 120_000);

  it("skips the reserved slot and padding, keeping their poison, on both paths", () => {
    const rng = new Rng(SEED + 2);
    for (const format of FORMATS) {
      for (const path of paths) {
        const shape: CaseShape = {
          format, source: "bf16", n: 513, loc: "i32", sourcePad: 0, cachePad: 16, paged: true, scale: 1, reservedSlot: 0,
          options: { path, warps: 8, rowsPerWarp: 1 },
        };
        expect(runCase(shape, rng), describeCase(shape)).toBeNull();
      }
    }
  }, 120_000);

  it("writes byte-exactly with the tuned choice (first use tunes each format) at batch sizes across the buckets", () => {
    const rng = new Rng(SEED + 3);
    for (const format of FORMATS) {
      for (const n of [1, 64, 1000, 5000]) {
        const shape: CaseShape = {
          format, source: "bf16", n, loc: "i64", sourcePad: 0, cachePad: 0, paged: true, scale: Math.fround(0.0173), reservedSlot: null, options: {},
        };
        expect(runCase(shape, rng), describeCase(shape)).toBeNull();
      }
    }
  }, 120_000);

  it("reports a loc past the capacity and still writes every other row", () => {
    using cache = allocTensor("u8", [32, 656]);
    poison(cache, 32 * 656);
    using kNope = fromHost(new Uint16Array(3 * 512).fill(0x3f80), "bf16", [3, 512]);
    using kRope = fromHost(new Uint16Array(3 * 64).fill(0x4000), "bf16", [3, 64]);
    using loc = fromHost(new Int32Array([5, 32, 6]), "i32", [3]);
    setMlaKvBuffer(cache, loc, kNope, kRope, { format: "fp8_ds_mla" });
    let error: unknown;
    try {
      checkErrors(0);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MlaKvError);
    expect((error as MlaKvError).code).toBe("OUT_OF_RANGE_LOC");
    expect((error as MlaKvError).message).toContain("first at row index 1");
    const bytes = asBytes(cache.download() as ArrayBufferView);
    const row5 = bytes.subarray(5 * 656, 6 * 656);
    // All 1.0: amax 1, scale 1/448, every code 448 = 0x7e; rope 2.0 stays bf16 0x4000.
    expect(row5.subarray(0, 512).every((b) => b === 0x7e)).toBe(true);
    expect(new DataView(row5.buffer, row5.byteOffset).getFloat32(512, true)).toBe(Math.fround(1 / 448));
    expect(new DataView(row5.buffer, row5.byteOffset).getUint16(528, true)).toBe(0x4000);
    expect(bytes.subarray(6 * 656, 7 * 656)).toEqual(row5);
    expect(bytes.subarray(7 * 656).every((b) => b === POISON)).toBe(true);
  });

  it("replays a captured quantizing write with PDL, and each replay reads the sources as they are then", () => {
    using stream = Stream.create();
    using cache = allocTensor("fp8_e4m3", [8, 576]);
    using kNope = fromHost(new Uint16Array(2 * 512).fill(0x3f80), "bf16", [2, 512]); // 1.0
    using kRope = fromHost(new Uint16Array(2 * 64).fill(0x3f80), "bf16", [2, 64]);
    using loc = fromHost(new Int32Array([2, 6]), "i32", [2]);
    setMlaKvBuffer(cache, loc, kNope, kRope, { stream, scale: 0.5 }); // eager: tunes if needed
    using graph = stream.capture(() => setMlaKvBuffer(cache, loc, kNope, kRope, { stream, scale: 0.5, pdl: true }));
    kNope.upload(new Uint16Array(2 * 512).fill(0x4000), { stream }); // 2.0
    graph.replay(stream);
    stream.synchronize();
    const bytes = asBytes(cache.download() as ArrayBufferView);
    // 2.0 / 0.5 = 4 = e4m3 0x48; 1.0 / 0.5 = 2 = 0x40.
    expect(bytes[2 * 576]).toBe(0x48);
    expect(bytes[2 * 576 + 512]).toBe(0x40);
    expect(bytes[6 * 576 + 511]).toBe(0x48);
  });
});
