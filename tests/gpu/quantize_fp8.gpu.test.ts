/**
 * Quantize-on-write (cuda/quantize_fp8.cuh) on a real GPU, byte for byte against the plain host
 * reference of the conversion (tests/helpers/fp8_reference.ts and fp8_cache_reference.ts), over
 * the whole poisoned cache: rows not named in loc, the reserved slot, the bytes past a format's
 * row, a DeepSeek V4 scale word's pad byte and a page's padding keep the poison.
 *
 * Every format: flat e4m3 and e5m2, ds_mla (both scale rules), ds_v4 and the indexer (both
 * rules, paged, page sizes 1, 16, 64, 7 and 48). Sources mix ordinary activations with every
 * awkward value (tests/helpers/fp8_sources.ts): NaN (both signs, payloads), ±inf, subnormals,
 * values past the fp8 range, -0, all-zero and tiny-amax tiles, and raw random bit patterns.
 */
import { describe, expect, it } from "bun:test";
import {
  allocTensor,
  checkErrors,
  fromHost,
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
import { thrown } from "../helpers/thrown.ts";
import {
  bf16BitsToF32,
  DS_MLA_FP8,
  DS_V4_FP8,
  fp16BitsToF32,
  INDEXER_FP8,
  SCALE_RULES,
  type ScaleRule,
  type SourceFormat,
  type TileFormat,
} from "../helpers/fp8_reference.ts";
import { isPaged, type QuantizedFormat } from "../helpers/fp8_cache_reference.ts";
import { decodeDsMlaRow, decodeDsV4Token, decodeErrorBound, decodeIndexerToken, e8m0ToF32, readScale, type ScaleReader } from "../helpers/fp8_readers.ts";
import { RECIPES } from "../helpers/fp8_sources.ts";
import { describeCase, poisonLost, prepareCase, type CaseShape, type PreparedCase } from "../helpers/quantized_case.ts";

const gpu = probeGpu();
const SEED = Number(process.env.MLA_KV_TEST_SEED ?? 20261124);

const ROW_FORMATS = ["fp8_e4m3", "fp8_e5m2", "fp8_ds_mla"] as const;
const PAGED_FORMATS = ["fp8_ds_v4", "fp8_indexer"] as const;
const SOURCES: SourceFormat[] = ["bf16", "fp16"];
const SCALES = [1, 0.5, Math.fround(0.0173), Math.fround(3.7), Math.fround(1 / 448)];
const PAGE_SIZES = [1, 16, 64, 7, 48];
const LAUNCH_SHAPES: Array<[Warps, RowsPerWarp]> = [[1, 1], [4, 2], [8, 1], [16, 4], [2, 4]];

/**
 * The options this suite passes: setMlaKvBuffer's, with the tile-scaled formats, their scale rule
 * and the paged formats' page size. The indexer has no rope part, so kRope is undefined there.
 */
type QuantizedOptions = Omit<SetMlaKvBufferOptions, "format"> & {
  format?: "fp8_ds_mla" | "fp8_ds_v4" | "fp8_indexer";
  scaleRule?: ScaleRule;
  pageSize?: number;
};
const write = setMlaKvBuffer as unknown as (
  cache: DeviceTensor,
  loc: DeviceTensor,
  kNope: DeviceTensor,
  kRope: DeviceTensor | undefined,
  options: QuantizedOptions,
) => void;

interface GpuCase extends CaseShape {
  options: QuantizedOptions;
  /** Row formats: view the cache as [pages of 16, 16, W] instead of [slots, W]. */
  view3d?: boolean;
}

const flat = (format: QuantizedFormat) => format === "fp8_e4m3" || format === "fp8_e5m2";

/** A shape with the defaults of this suite: 512+64 or the format's parts, page 16 for paged formats. */
function shapeOf(format: QuantizedFormat, rng: Rng, extra: Partial<GpuCase> = {}): GpuCase {
  return {
    format, source: "bf16", n: 300, loc: "i64", pageSize: isPaged(format) ? 16 : 0, sourcePad: 0, cachePad: 0, reservedSlot: null,
    scale: flat(format) ? SCALES[rng.below(SCALES.length)]! : undefined, options: {}, ...extra,
  };
}

/** The cache tensor of a case: fp8 dtype for flat rows, u8 otherwise; pages [pages, page bytes]. */
function allocCache(c: PreparedCase, view3d: boolean): DeviceTensor {
  const s = c.shape;
  const dtype = flat(s.format) ? s.format : "u8";
  if (isPaged(s.format) || !view3d) return allocTensor(dtype, [c.cacheRows, c.cacheRowStride]);
  return allocTensor(dtype, [c.cacheRows / 16, 16, c.cacheRowStride]);
}

/** Runs one write on the GPU and returns the cache's bytes, after checking its out-of-range report. */
function runOnGpu(c: PreparedCase, shape: GpuCase): Uint8Array {
  const owned: DeviceTensor[] = [];
  const own = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  try {
    const cache = own(allocCache(c, shape.view3d ?? false));
    poison(cache, c.want.length);
    const src = own(fromHost(c.sources, shape.source, [Math.max(1, shape.n), c.sourceStride]));
    const kNope = src.narrow(1, 0, c.nopeElems);
    // Only the indexer has no rope part; a flat row without one passes an empty view, as an engine would.
    const kRope = shape.format === "fp8_indexer" ? undefined : src.narrow(1, c.ropeStart, c.ropeElems);
    const loc = own(locTensor(shape.loc, c.loc));
    const options: QuantizedOptions = {
      ...shape.options,
      ...(flat(shape.format) ? { scale: shape.scale } : { format: shape.format as "fp8_ds_mla" | "fp8_ds_v4" | "fp8_indexer" }),
      ...(shape.scaleRule ? { scaleRule: shape.scaleRule } : {}),
      ...(isPaged(shape.format) ? { pageSize: shape.pageSize } : {}),
      reservedSlot: shape.reservedSlot,
    };
    write(cache, loc, kNope, kRope, options);
    if (c.outOfRange.count === 0) {
      checkErrors(0);
    } else {
      const error = thrown(() => checkErrors(0));
      expect(error.code).toBe("OUT_OF_RANGE_LOC");
      expect(error.message).toContain(`first at row index ${c.outOfRange.first}`);
    }
    return asBytes(cache.download() as ArrayBufferView);
  } finally {
    for (const t of owned) t.free();
  }
}

/** Null when the GPU left exactly the reference's bytes and every undefined byte's poison. */
function runCase(shape: GpuCase, rng: Rng): string | null {
  const c = prepareCase(shape, rng);
  const got = runOnGpu(c, shape);
  const difference = firstDifference(got, c.want, c.cacheRowStride);
  if (difference !== null) return difference;
  const lost = poisonLost(c, got);
  return lost === 0 ? null : `${lost} bytes the format does not define lost their poison`;
}

const describeGpuCase = (s: GpuCase) => `${describeCase(s)}${s.view3d ? ", 3-d cache" : ""}, ${JSON.stringify(s.options)}`;

describe.skipIf(!gpu.ok)(gpuSuiteName("quantize-on-write"), () => {
  const tma = gpu.ok && supportsPath(0, "tma");
  const paths: Path[] = tma ? ["vector", "tma"] : ["vector"];
  const rulesOf = (format: QuantizedFormat): Array<ScaleRule | undefined> => (flat(format) ? [undefined] : [...SCALE_RULES[format as TileFormat]]);

  it("writes the row formats from bf16 and fp16 byte-exactly on both paths, with both ds_mla rules, for every launch shape", () => {
    const rng = new Rng(SEED);
    let cases = 0;
    for (const format of ROW_FORMATS) {
      for (const scaleRule of rulesOf(format)) {
        for (const source of SOURCES) {
          for (const path of paths) {
            for (const [warps, rowsPerWarp] of LAUNCH_SHAPES) {
              for (const n of [1, 7, 300]) {
                const shape = shapeOf(format, rng, {
                  source, n, loc: n % 2 ? "i64" : "i32", view3d: warps === 8, scaleRule, options: { path, warps, rowsPerWarp },
                });
                expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
                ++cases;
              }
            }
          }
        }
      }
    }
    expect(cases).toBe((2 + 2) * SOURCES.length * paths.length * LAUNCH_SHAPES.length * 3);
  }, 300_000);

  it("writes the paged formats from bf16 and fp16 byte-exactly with every rule, for every launch shape", () => {
    const rng = new Rng(SEED + 10);
    for (const format of PAGED_FORMATS) {
      for (const scaleRule of rulesOf(format)) {
        for (const source of SOURCES) {
          for (const [warps, rowsPerWarp] of LAUNCH_SHAPES) {
            for (const n of [1, 2, 7, 300]) {
              const shape = shapeOf(format, rng, { source, n, loc: n % 2 ? "i64" : "i32", scaleRule, options: { path: "vector", warps, rowsPerWarp } });
              expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
            }
          }
        }
      }
    }
  }, 300_000);

  it("places paged tokens at page slot / pageSize for page sizes 1, 16, 64, 7 and 48 with both loc dtypes, keeping pad bytes and page padding poisoned", () => {
    const rng = new Rng(SEED + 11);
    for (const format of PAGED_FORMATS) {
      for (const scaleRule of rulesOf(format)) {
        for (const pageSize of PAGE_SIZES) {
          for (const loc of ["i32", "i64"] as const) {
            const shape = shapeOf(format, rng, { source: rng.below(2) ? "bf16" : "fp16", n: 200, loc, pageSize, scaleRule, cachePad: 16 * rng.below(2), options: { path: "vector", warps: 4, rowsPerWarp: 2 } });
            expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
          }
        }
      }
    }
  }, 120_000);

  it("writes every kind of source value in every format: NaN of both signs, ±inf, subnormals, past-range, -0, all-zero and tiny-amax tiles", () => {
    const rng = new Rng(SEED + 12);
    for (const format of [...ROW_FORMATS, ...PAGED_FORMATS]) {
      for (const scaleRule of rulesOf(format)) {
        for (const source of SOURCES) {
          for (let recipe = 0; recipe < RECIPES; ++recipe) {
            const shape = shapeOf(format, rng, { source, n: 64, recipe, scaleRule, pageSize: isPaged(format) ? 7 : 0, options: { path: "vector", warps: 4, rowsPerWarp: 1 } });
            expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
          }
        }
      }
    }
  }, 120_000);

  it("writes flat rows of other shapes, up to two nope chunks and two rope pairs a lane", () => {
    const rng = new Rng(SEED + 4);
    for (const parts of [[1024, 128], [256, 0], [0, 64], [16, 2], [528, 62], [992, 126]] as Array<[number, number]>) {
      for (const path of paths) {
        // TMA needs the row to be a multiple of 16 bytes; the others run on the vector path only.
        if (path === "tma" && (parts[0] + parts[1]) % 16 !== 0) continue;
        const shape = shapeOf(rng.below(2) ? "fp8_e4m3" : "fp8_e5m2", rng, {
          source: rng.below(2) ? "bf16" : "fp16", n: 130, loc: "i32", parts, options: { path, warps: 4, rowsPerWarp: 4 },
        });
        expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
      }
    }
  }, 120_000);

  it("reads unaligned and strided sources, and writes caches whose rows or pages allow no wide stores", () => {
    const rng = new Rng(SEED + 1);
    for (const format of [...ROW_FORMATS, ...PAGED_FORMATS]) {
      for (const [sourcePad, cachePad] of [[3, 0], [8, 0], [0, 1], [0, 8], [5, 3]] as Array<[number, number]>) {
        for (const path of isPaged(format) ? (["vector"] as Path[]) : paths) {
          // TMA stores whole rows in bulk: the cache row must stay a multiple of 16 bytes.
          if (path === "tma" && cachePad % 16 !== 0) continue;
          const shape = shapeOf(format, rng, {
            source: rng.below(2) ? "bf16" : "fp16", n: 257, sourcePad, cachePad, pageSize: isPaged(format) ? 48 : 0,
            options: { path, warps: 4, rowsPerWarp: 2 },
          });
          expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
        }
      }
    }
  }, 120_000);

  it("skips the reserved slot and padding, keeping their poison, and reports a loc past the capacity while writing every other row", () => {
    const rng = new Rng(SEED + 2);
    for (const format of [...ROW_FORMATS, ...PAGED_FORMATS]) {
      for (const path of isPaged(format) ? (["vector"] as Path[]) : paths) {
        for (const outOfRange of [false, true]) {
          const shape = shapeOf(format, rng, {
            n: 513, loc: "i32", cachePad: 16, reservedSlot: outOfRange ? 5 : 0, outOfRange, view3d: !isPaged(format),
            pageSize: isPaged(format) ? 64 : 0, options: { path, warps: 8, rowsPerWarp: 1 },
          });
          expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
        }
      }
    }
  }, 120_000);

  it("writes byte-exactly with the tuned choice (first use tunes each format) at batch sizes across the buckets", () => {
    const rng = new Rng(SEED + 3);
    for (const format of [...ROW_FORMATS, ...PAGED_FORMATS]) {
      for (const n of [1, 64, 1000, 5000]) {
        const shape = shapeOf(format, rng, { n, view3d: !isPaged(format), pageSize: isPaged(format) ? 64 : 0, scale: flat(format) ? Math.fround(0.0173) : undefined });
        expect(runCase(shape, rng), describeGpuCase(shape)).toBeNull();
      }
    }
  }, 120_000);

  it("reads back, the way each reader reads our bytes, within e4m3's error of the sources", () => {
    const rng = new Rng(SEED + 5);
    const READERS: ScaleReader[] = ["fp32", "bf16", "e8m0"];
    let checked = 0;
    let firstBad: string | null = null;
    for (const format of ["fp8_ds_mla", ...PAGED_FORMATS] as const) {
      for (const scaleRule of rulesOf(format)) {
        for (const source of SOURCES) {
          const shape = shapeOf(format, rng, { source, n: 200, scaleRule, options: { path: "vector", warps: 4, rowsPerWarp: 1 } });
          const c = prepareCase(shape, rng);
          const got = runOnGpu(c, shape);
          const view = new DataView(got.buffer, got.byteOffset, got.byteLength);
          const decode16 = source === "bf16" ? bf16BitsToF32 : fp16BitsToF32;
          c.loc.forEach((slot, i) => {
            if (slot < 0 || slot >= c.capacity) return;
            // decoded[k] of row i against its source element k, the stored scale and the reader's.
            const near = (decoded: number, k: number, stored: number, read: number, reader: string) => {
              const x = decode16(c.sources[i * c.sourceStride + k]!);
              if (!Number.isFinite(x)) return;
              ++checked;
              if (firstBad === null && Math.abs(decoded - x) > decodeErrorBound(x, stored, read) * (1 + 2 ** -30)) {
                firstBad = `${describeCase(shape)}: row ${i} element ${k} = ${x} read by ${reader} as ${decoded} (scale ${stored} read as ${read})`;
              }
            };
            const page = Math.floor(slot / (shape.pageSize || 1)) * c.cacheRowStride;
            const token = slot % (shape.pageSize || 1);
            if (format === "fp8_ds_mla") {
              const start = slot * c.cacheRowStride;
              for (const reader of READERS) {
                decodeDsMlaRow(got.subarray(start, start + DS_MLA_FP8.rowBytes), reader).nope.forEach((v, k) => {
                  const stored = view.getFloat32(start + DS_MLA_FP8.scalesOffset + 4 * Math.floor(k / DS_MLA_FP8.tileSize), true);
                  near(v, k, stored, readScale(stored, reader), reader);
                });
              }
            } else if (format === "fp8_ds_v4") {
              const words = page + shape.pageSize * DS_V4_FP8.tokenBytes + token * DS_V4_FP8.scaleWordBytes;
              decodeDsV4Token(got, page, shape.pageSize, token).nope.forEach((v, k) => {
                const stored = e8m0ToF32(got[words + Math.floor(k / DS_V4_FP8.tileSize)]!);
                near(v, k, stored, stored, "e8m0");
              });
            } else {
              const stored = view.getFloat32(page + shape.pageSize * INDEXER_FP8.dim + token * INDEXER_FP8.scaleBytes, true);
              decodeIndexerToken(got, page, shape.pageSize, token).forEach((v, k) => near(v, k, stored, stored, "fp32"));
            }
          });
        }
      }
    }
    expect(firstBad).toBeNull();
    expect(checked).toBeGreaterThan(100_000);
  }, 120_000);

  it("stores 1.0 as 256 under the pow2 scale 2^-8 and as 448 under the amax scale 1/448, on both paths", () => {
    for (const path of paths) {
      for (const [scaleRule, code, scale] of [["pow2", 0x78, 2 ** -8], ["amax", 0x7e, Math.fround(1 / 448)]] as const) {
        using cache = allocTensor("u8", [32, 656]);
        poison(cache, 32 * 656);
        using kNope = fromHost(new Uint16Array(2 * 512).fill(0x3f80), "bf16", [2, 512]);
        using kRope = fromHost(new Uint16Array(2 * 64).fill(0x4000), "bf16", [2, 64]);
        using loc = fromHost(new Int32Array([5, 6]), "i32", [2]);
        write(cache, loc, kNope, kRope, { format: "fp8_ds_mla", scaleRule, path, warps: 1, rowsPerWarp: 1 });
        checkErrors(0);
        const bytes = asBytes(cache.download() as ArrayBufferView);
        const row5 = bytes.subarray(5 * 656, 6 * 656);
        expect(row5.subarray(0, 512).every((b) => b === code)).toBe(true);
        const view = new DataView(row5.buffer, row5.byteOffset);
        for (let t = 0; t < 4; ++t) expect(view.getFloat32(512 + 4 * t, true)).toBe(scale);
        expect(view.getUint16(528, true)).toBe(0x4000);
        expect(bytes.subarray(6 * 656, 7 * 656)).toEqual(row5);
        expect(bytes.subarray(7 * 656).every((b) => b === POISON)).toBe(true);
      }
    }
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
