/**
 * The quantizing write of the C ABI's host implementation (tests/ffi/fixtures/host_quantize.h,
 * from cuda/fp8_rules.h) against the TypeScript reference (tests/helpers/fp8_reference.ts),
 * byte for byte over the whole poisoned cache, through the real FFI. The two are written
 * separately from the same rules, so this checks both on any machine; the GPU suite checks the
 * kernels against the same reference.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { bunAdapter } from "../../ffi/bun_adapter.ts";
import type { OpenedLibrary } from "../../ffi/library_adapter.ts";
import {
  MLA_KV_ERR_OUT_OF_RANGE_LOC,
  MLA_KV_ERR_UNSUPPORTED,
  MLA_KV_FORMAT_CODES,
  MLA_KV_OK,
  MLA_KV_PATH_TMA,
  MLA_KV_PATH_VECTOR,
  MLA_KV_SCALE_DEFAULT,
  MLA_KV_SCALE_RULE_CODES,
  MLA_KV_SOURCE_CODES,
} from "../../ffi/abi.ts";
import {
  bf16BitsToF32,
  DS_MLA_FP8,
  fp16BitsToF32,
  INDEXER_FP8,
  indexerPageBytes,
  SCALE_RULES,
  tileScale,
  type SourceFormat,
} from "../helpers/fp8_reference.ts";
import type { QuantizedFormat } from "../helpers/fp8_cache_reference.ts";
import { firstDifference, Rng } from "../helpers/gpu.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeCase, poisonLost, prepareCase, type CaseShape, type PreparedCase } from "../helpers/quantized_case.ts";

const SOURCES: readonly SourceFormat[] = ["bf16", "fp16"];
const TILE_FORMATS = ["fp8_ds_mla", "fp8_ds_v4", "fp8_indexer"] as const;
const PAGE_SIZES = [1, 16, 64, 7, 48];

const host = hostLibrary();

describe.skipIf(!host)(`the host fixture's quantizing write${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  let lib: OpenedLibrary;
  beforeAll(() => {
    lib = bunAdapter.open(host!);
  });
  afterAll(() => lib.close());

  /** A host "device" buffer holding `bytes`. */
  function upload(bytes: Uint8Array): number {
    const out = new BigUint64Array(1);
    expect(lib.symbols.mla_kv_malloc(0, Math.max(1, bytes.length), out)).toBe(MLA_KV_OK);
    const address = Number(out[0]);
    expect(lib.symbols.mla_kv_memcpy_htod(0, address, bytes, bytes.length, 0)).toBe(MLA_KV_OK);
    return address;
  }

  interface Written {
    status: number;
    cache: Uint8Array;
    count: number;
    first: number;
  }

  /** Runs the prepared write through mla_kv_set_kv_buffer_quantized and reads everything back. */
  function write(c: PreparedCase, path = MLA_KV_PATH_VECTOR): Written {
    const s = c.shape;
    const poisoned = new Uint8Array(c.want.length).fill(0xa5);
    const cache = upload(poisoned);
    const locBytes = s.loc === "i64" ? new Uint8Array(BigInt64Array.from(c.loc, BigInt).buffer) : new Uint8Array(Int32Array.from(c.loc).buffer);
    const loc = upload(locBytes);
    const sources = upload(new Uint8Array(c.sources.buffer, c.sources.byteOffset, c.sources.byteLength));
    const strideBytes = 2 * c.sourceStride;
    const rope = c.ropeElems === 0 ? 0 : sources + 2 * c.ropeStart;
    try {
      const status = lib.symbols.mla_kv_set_kv_buffer_quantized(
        0, 0, MLA_KV_FORMAT_CODES[s.format], s.scaleRule ? MLA_KV_SCALE_RULE_CODES[s.scaleRule] : MLA_KV_SCALE_DEFAULT,
        cache, c.capacity, c.cacheRowStride, s.pageSize, loc, s.loc === "i64" ? 8 : 4, s.n, MLA_KV_SOURCE_CODES[s.source],
        sources, strideBytes, c.nopeElems, rope, strideBytes, c.ropeElems, s.scale ?? 1, s.reservedSlot ?? -1, path, 4, 1, 0,
      );
      const count = new BigInt64Array(1);
      const first = new BigInt64Array(1);
      const checked = lib.symbols.mla_kv_check_errors(0, 0, count, first);
      expect(checked === MLA_KV_OK || checked === MLA_KV_ERR_OUT_OF_RANGE_LOC).toBe(true);
      const back = new Uint8Array(c.want.length);
      expect(lib.symbols.mla_kv_memcpy_dtoh(0, back, cache, back.length, 0)).toBe(MLA_KV_OK);
      return { status, cache: back, count: Number(count[0]), first: Number(first[0]) };
    } finally {
      for (const p of [cache, loc, sources]) lib.symbols.mla_kv_free(0, p);
    }
  }

  /** Null when the write left exactly the reference's bytes, counted what it should, and kept every pad byte's poison. */
  function check(shape: CaseShape, rng: Rng): string | null {
    const c = prepareCase(shape, rng);
    const got = write(c);
    if (got.status !== MLA_KV_OK) return `status ${got.status}: ${lib.symbols.mla_kv_last_error()}`;
    const difference = firstDifference(got.cache, c.want, c.cacheRowStride);
    if (difference !== null) return difference;
    const lost = poisonLost(c, got.cache);
    if (lost !== 0) return `${lost} bytes the format does not define lost their poison`;
    if (got.count !== c.outOfRange.count) return `counted ${got.count} rows past the capacity, want ${c.outOfRange.count}`;
    if (c.outOfRange.count > 0 && got.first !== c.outOfRange.first) return `first row past the capacity ${got.first}, want ${c.outOfRange.first}`;
    return null;
  }

  const base = (format: QuantizedFormat, source: SourceFormat): CaseShape => ({
    format, source, n: 40, loc: "i64", pageSize: format === "fp8_ds_v4" || format === "fp8_indexer" ? 16 : 0, sourcePad: 0, cachePad: 0,
    reservedSlot: null, scale: format === "fp8_e4m3" || format === "fp8_e5m2" ? Math.fround(0.0173) : undefined,
  });

  it("writes every format from bf16 and fp16 with every rule and both loc dtypes as the reference does, byte for byte", () => {
    const rng = new Rng(101);
    let cases = 0;
    for (const source of SOURCES) {
      for (const loc of ["i32", "i64"] as const) {
        for (const format of ["fp8_e4m3", "fp8_e5m2"] as const) {
          for (const scale of [1, 0.5, Math.fround(0.0173), Math.fround(3.7)]) {
            const shape = { ...base(format, source), loc, scale };
            expect(check(shape, rng), describeCase(shape)).toBeNull();
            ++cases;
          }
        }
        for (const format of TILE_FORMATS) {
          for (const scaleRule of [undefined, ...SCALE_RULES[format]]) {
            const shape = { ...base(format, source), loc, scaleRule };
            expect(check(shape, rng), describeCase(shape)).toBeNull();
            ++cases;
          }
        }
      }
    }
    expect(cases).toBe(2 * 2 * (2 * 4 + 3 + 2 + 3));
  });

  it("writes every kind of source value: NaN of both signs, ±inf, subnormals, values past the range, -0, all-zero and tiny-amax tiles", () => {
    const rng = new Rng(102);
    for (const format of ["fp8_e4m3", "fp8_e5m2", ...TILE_FORMATS] as const) {
      for (const source of SOURCES) {
        for (let recipe = 0; recipe < 7; ++recipe) {
          const rules = format === "fp8_e4m3" || format === "fp8_e5m2" ? [undefined] : SCALE_RULES[format];
          for (const scaleRule of rules) {
            const shape = { ...base(format, source), n: 24, recipe, scaleRule };
            expect(check(shape, rng), describeCase(shape)).toBeNull();
          }
        }
      }
    }
  });

  it("places paged tokens at page slot / pageSize for page sizes 1, 16, 64, 7 and 48, keeping pad bytes and page padding poisoned", () => {
    const rng = new Rng(103);
    for (const format of ["fp8_ds_v4", "fp8_indexer"] as const) {
      for (const pageSize of PAGE_SIZES) {
        for (const source of SOURCES) {
          for (const cachePad of [0, 16, 5]) {
            const shape = { ...base(format, source), n: 60, pageSize, cachePad, scaleRule: format === "fp8_indexer" && pageSize % 2 ? "ue8m0" as const : undefined };
            expect(check(shape, rng), describeCase(shape)).toBeNull();
          }
        }
      }
    }
  });

  it("reads strided sources and writes rows with padded strides for the row formats", () => {
    const rng = new Rng(104);
    for (const format of ["fp8_e4m3", "fp8_e5m2", "fp8_ds_mla"] as const) {
      for (const [sourcePad, cachePad] of [[3, 0], [8, 0], [0, 1], [5, 3], [0, 16]] as Array<[number, number]>) {
        const shape = { ...base(format, SOURCES[rng.below(2)]!), sourcePad, cachePad };
        expect(check(shape, rng), describeCase(shape)).toBeNull();
      }
    }
    for (const format of ["fp8_ds_v4", "fp8_indexer"] as const) {
      const shape = { ...base(format, "fp16"), sourcePad: 3, pageSize: 7 };
      expect(check(shape, rng), describeCase(shape)).toBeNull();
    }
  });

  it("skips padding and the reserved slot, and counts each loc past the capacity with the first such row", () => {
    const rng = new Rng(105);
    for (const format of ["fp8_e4m3", ...TILE_FORMATS] as const) {
      for (const pageSize of format === "fp8_ds_v4" || format === "fp8_indexer" ? [1, 7, 64] : [0]) {
        const shape = { ...base(format, "bf16"), pageSize, reservedSlot: 5, outOfRange: true };
        const c = prepareCase(shape, rng);
        expect(c.outOfRange).toEqual({ count: 2, first: 4 });
        expect(check(shape, rng), describeCase(shape)).toBeNull();
      }
    }
  });

  it("refuses the TMA path for the paged formats", () => {
    const rng = new Rng(106);
    for (const format of ["fp8_ds_v4", "fp8_indexer"] as const) {
      const c = prepareCase({ ...base(format, "bf16"), n: 4 }, rng);
      const got = write(c, MLA_KV_PATH_TMA);
      expect(got.status).toBe(MLA_KV_ERR_UNSUPPORTED);
      expect(got.cache.every((b) => b === 0xa5)).toBe(true);
    }
  });

  /** Rows (ds_mla) or tokens (indexer) each of whose tiles is [±amax, 0, ...], for every amax given. */
  function singleElementTiles(amaxBits: number[], tileSize: number, elems: number, rng: Rng): Uint16Array {
    const tiles = elems / tileSize;
    const rows = Math.ceil(amaxBits.length / tiles);
    const out = new Uint16Array(rows * elems);
    amaxBits.forEach((bits, j) => (out[j * tileSize + rng.below(tileSize)] = bits | (rng.below(2) << 15)));
    return out;
  }

  function everyFiniteMagnitude(source: SourceFormat): number[] {
    const top = source === "bf16" ? 0x7f80 : 0x7c00;
    return Array.from({ length: top }, (_, b) => b);
  }

  /** Writes `sources` rows as `format` at slots 0..rows-1 and returns the stored fp32 scale bytes' values. */
  function scalesWritten(format: "fp8_ds_mla" | "fp8_indexer", scaleRule: "pow2" | "amax" | "ue8m0", source: SourceFormat, sources: Uint16Array): Float32Array {
    const elems = format === "fp8_ds_mla" ? DS_MLA_FP8.nopeDim : INDEXER_FP8.dim;
    const n = sources.length / elems;
    const rope = new Uint16Array(format === "fp8_ds_mla" ? n * DS_MLA_FP8.ropeDim : 0);
    const pageSize = format === "fp8_indexer" ? n : 0;
    const stride = format === "fp8_ds_mla" ? DS_MLA_FP8.rowBytes : indexerPageBytes(n);
    const cacheBytes = format === "fp8_ds_mla" ? n * stride : stride;
    const cache = upload(new Uint8Array(cacheBytes));
    const loc = upload(new Uint8Array(Int32Array.from({ length: n }, (_, i) => i).buffer));
    const nope = upload(new Uint8Array(sources.buffer));
    const ropePtr = rope.length ? upload(new Uint8Array(rope.buffer)) : 0;
    try {
      const status = lib.symbols.mla_kv_set_kv_buffer_quantized(
        0, 0, MLA_KV_FORMAT_CODES[format], MLA_KV_SCALE_RULE_CODES[scaleRule], cache, n, stride, pageSize, loc, 4, n,
        MLA_KV_SOURCE_CODES[source], nope, 2 * elems, elems, ropePtr, 2 * DS_MLA_FP8.ropeDim, rope.length ? DS_MLA_FP8.ropeDim : 0,
        1, -1, MLA_KV_PATH_VECTOR, 4, 1, 0,
      );
      expect(status, lib.symbols.mla_kv_last_error()).toBe(MLA_KV_OK);
      const back = new Uint8Array(cacheBytes);
      expect(lib.symbols.mla_kv_memcpy_dtoh(0, back, cache, back.length, 0)).toBe(MLA_KV_OK);
      if (format === "fp8_indexer") return new Float32Array(back.buffer.slice(n * INDEXER_FP8.dim));
      const scales = new Float32Array(n * DS_MLA_FP8.tiles);
      const view = new DataView(back.buffer);
      for (let i = 0; i < n; ++i) {
        for (let t = 0; t < DS_MLA_FP8.tiles; ++t) scales[i * DS_MLA_FP8.tiles + t] = view.getFloat32(i * stride + DS_MLA_FP8.scalesOffset + 4 * t, true);
      }
      return scales;
    } finally {
      for (const p of [cache, loc, nope, ropePtr]) if (p) lib.symbols.mla_kv_free(0, p);
    }
  }

  function mismatchedScales(format: "fp8_ds_mla" | "fp8_indexer", scaleRule: "pow2" | "amax" | "ue8m0", source: SourceFormat): string[] {
    const rng = new Rng(107);
    const magnitudes = everyFiniteMagnitude(source);
    const elems = format === "fp8_ds_mla" ? DS_MLA_FP8.nopeDim : INDEXER_FP8.dim;
    const tileSize = format === "fp8_ds_mla" ? DS_MLA_FP8.tileSize : INDEXER_FP8.dim;
    const scales = scalesWritten(format, scaleRule, source, singleElementTiles(magnitudes, tileSize, elems, rng));
    const amaxOf = (bits: number) => (source === "bf16" ? bf16BitsToF32(bits) : fp16BitsToF32(bits));
    const bad: string[] = [];
    magnitudes.forEach((bits, j) => {
      const want = tileScale(format, scaleRule, amaxOf(bits));
      if (scales[j] !== want && bad.length < 5) bad.push(`amax 0x${bits.toString(16)}: got ${scales[j]}, want ${want}`);
    });
    return bad;
  }

  it("stores the pow2 scale the rule states for every finite bf16 and fp16 amax (ds_mla)", () => {
    for (const source of SOURCES) expect(mismatchedScales("fp8_ds_mla", "pow2", source)).toEqual([]);
  });

  it("stores the amax scale the rule states for every finite bf16 and fp16 amax (ds_mla)", () => {
    for (const source of SOURCES) expect(mismatchedScales("fp8_ds_mla", "amax", source)).toEqual([]);
  });

  it("stores the indexer's amax and ue8m0 scales the rules state for every finite bf16 and fp16 amax", () => {
    for (const source of SOURCES) {
      expect(mismatchedScales("fp8_indexer", "amax", source)).toEqual([]);
      expect(mismatchedScales("fp8_indexer", "ue8m0", source)).toEqual([]);
    }
  });
});
