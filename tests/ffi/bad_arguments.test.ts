/**
 * One table of bad arguments to the two writes, each refused with MLA_KV_ERR_INVALID_ARGUMENT and
 * a message naming what is wrong, checked against the host fixture and the built libmla_kv alike:
 * both run cuda/checks.h, and the library runs it before it looks for a device, so on a machine
 * without a GPU it refuses each of these, and answers NO_DEVICE only for good arguments.
 */
import { describe, expect, it } from "bun:test";
import { existsSync } from "node:fs";
import {
  MLA_KV_ERR_INVALID_ARGUMENT,
  MLA_KV_ERR_NO_DEVICE,
  MLA_KV_FORMAT_FP8_DS_V4,
  MLA_KV_FORMAT_FP8_E4M3,
  MLA_KV_FORMAT_FP8_E5M2,
  MLA_KV_FORMAT_FP8_INDEXER,
  MLA_KV_OK,
  MLA_KV_PATH_AUTO,
  MLA_KV_PATH_SPECIALIZED,
  MLA_KV_PATH_SPREAD,
  MLA_KV_PATH_TMA,
  MLA_KV_SCALE_AMAX,
  MLA_KV_SCALE_POW2,
  MLA_KV_SCALE_UE8M0,
  MLA_KV_SOURCE_FP16,
} from "../../ffi/abi.ts";
import { libraryCandidates } from "../../ffi/find_library.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { copyCall, locPtr, nopePtr, quantizedCall, ropePtr, runWriteCalls, type WriteCall } from "../helpers/write_calls.ts";

const INT64_MAX = 9223372036854775807n;

/** [sentence, call, fragment of the message]; every one is refused with INVALID_ARGUMENT. */
const BAD: Array<[string, WriteCall, string]> = [
  // ---- both writes' common arguments, on the copy ----
  ["refuses a negative n", copyCall({ n: -1 }), "n = -1 must be >= 0"],
  ["refuses an unknown path", copyCall({ path: 5 }), "path = 5 is not one of MLA_KV_PATH_AUTO/VECTOR/TMA/SPECIALIZED/SPREAD"],
  ["refuses a negative path", copyCall({ path: -1 }), "path = -1 is not one of"],
  ["refuses flags other than MLA_KV_FLAG_PDL", copyCall({ flags: 2 }), "flags = 2 has bits other than MLA_KV_FLAG_PDL"],
  ["refuses loc elements of 2 bytes", copyCall({ loc_elem_bytes: 2 }), "loc_elem_bytes = 2 must be 4 or 8"],
  ["refuses a NULL loc", copyCall({ loc: 0 }), "loc is NULL"],
  ["refuses an int64 loc on a 4-byte boundary", copyCall({ loc: locPtr(4) }), "is not aligned to its 8-byte elements"],
  ["refuses an int32 loc on a 2-byte boundary", copyCall({ loc: locPtr(2), loc_elem_bytes: 4 }), "is not aligned to its 4-byte elements"],
  ["refuses n whose loc array overflows int64", copyCall({ n: 2n ** 61n }), "n = 2305843009213693952 times loc_elem_bytes = 8 overflows int64"],
  ["refuses a NULL cache", copyCall({ cache: 0 }), "cache is NULL"],
  ["refuses a capacity of 0", copyCall({ capacity: 0 }), "capacity = 0 must be > 0"],
  ["refuses a negative capacity", copyCall({ capacity: -5 }), "capacity = -5 must be > 0"],
  // ---- the copy's sizes ----
  ["refuses a negative nope_bytes", copyCall({ nope_bytes: -16 }), "nope_bytes = -16 and rope_bytes = 128 must be >= 0"],
  ["refuses a negative rope_bytes", copyCall({ rope_bytes: -1 }), "must be >= 0"],
  [
    "refuses nope_bytes = INT64_MAX with rope_bytes = 1 (the sum overflows) and a 96-byte cache row",
    copyCall({ nope_bytes: INT64_MAX, rope_bytes: 1, cache_row_stride: 96, nope_row_stride: INT64_MAX }),
    "nope_bytes + rope_bytes = 9223372036854775807 + 1 overflows int64",
  ],
  ["refuses rows of 0 bytes", copyCall({ nope_bytes: 0, rope_bytes: 0 }), "nope_bytes + rope_bytes must be > 0"],
  ["refuses a NULL nope with nope_bytes > 0", copyCall({ nope: 0 }), "nope is NULL but nope_bytes = 1024"],
  ["refuses a NULL rope with rope_bytes > 0", copyCall({ rope: 0 }), "rope is NULL but rope_bytes = 128"],
  ["refuses a nope row stride smaller than its row", copyCall({ nope_row_stride: 1000 }), "nope_row_stride = 1000 is smaller than nope_bytes = 1024"],
  ["refuses a rope row stride smaller than its row", copyCall({ rope_row_stride: 64 }), "rope_row_stride = 64 is smaller than rope_bytes = 128"],
  ["refuses a cache row stride smaller than the row", copyCall({ cache_row_stride: 1000 }), "cache_row_stride = 1000 is smaller than nope_bytes + rope_bytes = 1152"],
  [
    "refuses capacity * cache_row_stride past int64",
    copyCall({ capacity: 2n ** 62n }),
    "capacity = 4611686018427387904 times cache_row_stride = 1152 overflows int64",
  ],
  [
    "refuses a cache whose capacity * cache_row_stride wraps the address space",
    copyCall({ cache: 0xc000000000000000n, capacity: 2n ** 52n, cache_row_stride: 1024, nope_bytes: 896 }),
    "capacity * cache_row_stride = 4611686018427387904 bytes from 0xc000000000000000 run past the end of the address space",
  ],
  [
    "refuses n * nope_row_stride past int64",
    copyCall({ n: 2n ** 53n, nope_row_stride: 1024 }),
    "n = 9007199254740992 times nope_row_stride = 1024 overflows int64",
  ],
  [
    "refuses n * rope_row_stride past int64",
    copyCall({ n: 2n ** 50n, rope_row_stride: 16384 }),
    "n = 1125899906842624 times rope_row_stride = 16384 overflows int64",
  ],
  [
    "refuses nope rows that wrap the address space",
    copyCall({ nope: 0xc000000000000000n, nope_row_stride: 2n ** 61n }),
    "n * nope_row_stride = 4611686018427387904 bytes from 0xc000000000000000 run past the end of the address space",
  ],
  ["refuses a reserved slot below -1", copyCall({ reserved_slot: -2 }), "reserved_slot = -2 must be -1 (none) or a slot below capacity = 64"],
  ["refuses a reserved slot equal to the capacity", copyCall({ reserved_slot: 64 }), "reserved_slot = 64 must be -1 (none) or a slot below capacity = 64"],
  ["refuses a reserved slot past the capacity", copyCall({ reserved_slot: 1000 }), "reserved_slot = 1000 must be -1"],
  // ---- the launch shape ----
  ["refuses 3 warps on the vector path", copyCall({ warps_per_block: 3 }), "warps_per_block = 3 must be 1, 2, 4, 8 or 16 (or 0 with MLA_KV_PATH_AUTO)"],
  ["refuses 32 warps", copyCall({ warps_per_block: 32 }), "warps_per_block = 32 must be"],
  ["refuses 0 warps on a path other than auto", copyCall({ warps_per_block: 0, path: MLA_KV_PATH_TMA }), "warps_per_block = 0 must be"],
  ["refuses 3 rows a warp", copyCall({ rows_per_warp: 3 }), "rows_per_warp = 3 must be 1, 2 or 4 (or 0 with MLA_KV_PATH_AUTO)"],
  ["refuses 8 rows a warp", copyCall({ rows_per_warp: 8 }), "rows_per_warp = 8 must be"],
  ["refuses 0 rows a warp on the specialized path", copyCall({ rows_per_warp: 0, path: MLA_KV_PATH_SPECIALIZED }), "rows_per_warp = 0 must be"],
  [
    "refuses the spread path with other warps than a 1152-byte row needs",
    copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 4 }),
    "MLA_KV_PATH_SPREAD with 1152-byte rows needs 3 warps (ceil(row vectors / 32)), or 0",
  ],
  [
    "refuses the spread path with 3 warps for a 1024-byte row, which needs 2",
    copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 3, nope_bytes: 896, nope_row_stride: 896, cache_row_stride: 1024 }),
    "with 1024-byte rows needs 2 warps",
  ],
  // ---- the quantizing write ----
  ["refuses an unknown format", quantizedCall({ format: 6 }), "format = 6 is not one of MLA_KV_FORMAT_FP8_E4M3/E5M2/DS_MLA/DS_V4/INDEXER"],
  ["refuses format 0", quantizedCall({ format: 0 }), "format = 0 is not one of"],
  ["refuses an unknown source dtype", quantizedCall({ source_dtype: 3 }), "source_dtype = 3 is not MLA_KV_SOURCE_BF16 or MLA_KV_SOURCE_FP16"],
  ["refuses a scale rule for a flat format", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, scale_rule: MLA_KV_SCALE_POW2, cache_row_stride: 576 }), "scale_rule = 1 is not one the fp8_e4m3 format accepts"],
  ["refuses the ue8m0 rule for ds_mla", quantizedCall({ scale_rule: MLA_KV_SCALE_UE8M0 }), "scale_rule = 3 is not one the fp8_ds_mla format accepts"],
  ["refuses an unknown scale rule", quantizedCall({ scale_rule: 4 }), "scale_rule = 4 is not one the fp8_ds_mla format accepts"],
  [
    "refuses the amax rule for ds_v4",
    quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, scale_rule: MLA_KV_SCALE_AMAX, nope_elems: 448, page_size: 64, cache_row_stride: 37440 }),
    "scale_rule = 2 is not one the fp8_ds_v4 format accepts",
  ],
  [
    "refuses the pow2 rule for the indexer",
    quantizedCall({ format: MLA_KV_FORMAT_FP8_INDEXER, scale_rule: MLA_KV_SCALE_POW2, nope_elems: 128, rope_elems: 0, rope: 0, page_size: 64, cache_row_stride: 8448 }),
    "scale_rule = 1 is not one the fp8_indexer format accepts",
  ],
  ["refuses a ds_mla row of 448 + 64 elements", quantizedCall({ nope_elems: 448 }), "the ds_mla format has 512 nope and 64 rope elements a row; got 448 and 64"],
  ["refuses a ds_v4 token of 512 + 64 elements", quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, page_size: 64, cache_row_stride: 37440 }), "the ds_v4 format has 448 nope and 64 rope elements a token; got 512 and 64"],
  ["refuses an indexer token with a rope part", quantizedCall({ format: MLA_KV_FORMAT_FP8_INDEXER, nope_elems: 128, page_size: 64, cache_row_stride: 8448 }), "the indexer format has 128 elements a token and no rope part; got 128 and 64"],
  ["refuses a flat nope part that is not a multiple of 16", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, nope_elems: 520, cache_row_stride: 1024 }), "nope_elems = 520 must be a multiple of 16 in 0..1024"],
  ["refuses a flat nope part past 1024 elements", quantizedCall({ format: MLA_KV_FORMAT_FP8_E5M2, nope_elems: 1040, nope_row_stride: 2080, cache_row_stride: 2048 }), "nope_elems = 1040 must be a multiple of 16 in 0..1024"],
  ["refuses an odd flat rope part", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, rope_elems: 3, cache_row_stride: 1024 }), "rope_elems = 3 must be a multiple of 2 in 0..128"],
  ["refuses a flat rope part past 128 elements", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, rope_elems: 130, rope_row_stride: 260, cache_row_stride: 1024 }), "rope_elems = 130 must be a multiple of 2 in 0..128"],
  ["refuses a flat row of no elements", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, nope_elems: 0, rope_elems: 0 }), "nope_elems + rope_elems must be > 0"],
  ["refuses a NULL rope for ds_mla", quantizedCall({ rope: 0 }), "rope is NULL but rope_elems = 64"],
  ["refuses a NULL nope for ds_mla", quantizedCall({ nope: 0 }), "nope is NULL but nope_elems = 512"],
  ["refuses a nope source on an odd address", quantizedCall({ nope: nopePtr(1) }), "must be multiples of the 2-byte source elements"],
  ["refuses an odd rope row stride", quantizedCall({ rope_row_stride: 129 }), "rope_row_stride = 129 must be multiples of the 2-byte source elements"],
  ["refuses a nope row stride smaller than its elements", quantizedCall({ nope_row_stride: 1000 }), "nope_row_stride = 1000 bytes is smaller than a row of 512 2-byte elements"],
  ["refuses a rope row stride smaller than its elements", quantizedCall({ rope_row_stride: 126 }), "rope_row_stride = 126 bytes is smaller than a row of 64 2-byte elements"],
  ["refuses a page size for a row format", quantizedCall({ page_size: 16 }), "page_size = 16 must be 0 for a row format"],
  ["refuses a paged format without a page size", quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, cache_row_stride: 37440 }), "page_size = 0 must be >= 1 and divide capacity = 64 for a paged format"],
  ["refuses a page size that does not divide the capacity", quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, page_size: 3, cache_row_stride: 37440 }), "page_size = 3 must be >= 1 and divide capacity = 64"],
  ["refuses a negative page size", quantizedCall({ format: MLA_KV_FORMAT_FP8_INDEXER, nope_elems: 128, rope_elems: 0, page_size: -64, cache_row_stride: 8448 }), "page_size = -64 must be >= 1"],
  [
    "refuses a ds_v4 page stride below the page padded to a multiple of 576 bytes",
    quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, page_size: 64, cache_row_stride: 64 * 584 }),
    "cache_row_stride = 37376 is smaller than a page of 64 tokens (37440 bytes)",
  ],
  [
    "refuses an indexer page stride below 132 bytes a token",
    quantizedCall({ format: MLA_KV_FORMAT_FP8_INDEXER, nope_elems: 128, rope_elems: 0, page_size: 64, cache_row_stride: 8447 }),
    "cache_row_stride = 8447 is smaller than a page of 64 tokens (8448 bytes)",
  ],
  [
    "refuses a page size whose page overflows int64",
    quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, capacity: 2n ** 62n, page_size: 2n ** 62n, cache_row_stride: 37440 }),
    "a page of page_size = 4611686018427387904 tokens overflows int64",
  ],
  ["refuses a ds_mla row stride below 656 bytes", quantizedCall({ cache_row_stride: 640 }), "cache_row_stride = 640 is smaller than the format's row of 656 bytes"],
  ["refuses a flat row stride below its row", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, cache_row_stride: 575 }), "cache_row_stride = 575 is smaller than the format's row of 576 bytes"],
  ["refuses a quantized cache whose capacity * cache_row_stride overflows", quantizedCall({ capacity: 2n ** 62n }), "capacity = 4611686018427387904 times cache_row_stride = 656 overflows int64"],
  ["refuses a flat scale of 0", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, cache_row_stride: 576, scale: 0 }), "scale = 0 must be finite and > 0"],
  ["refuses a negative flat scale", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, cache_row_stride: 576, scale: -1 }), "scale = -1 must be finite and > 0"],
  ["refuses a NaN flat scale", quantizedCall({ format: MLA_KV_FORMAT_FP8_E5M2, cache_row_stride: 576, scale: NaN }), "scale = nan must be finite and > 0"],
  ["refuses an infinite flat scale", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, cache_row_stride: 576, scale: Infinity }), "scale = inf must be finite and > 0"],
  ["refuses a flat scale past the largest fp32", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, cache_row_stride: 576, scale: 1e39 }), "scale = inf must be finite and > 0"],
  ["refuses a quantized reserved slot equal to the capacity", quantizedCall({ reserved_slot: 64 }), "reserved_slot = 64 must be -1 (none) or a slot below capacity = 64"],
  ["refuses a quantized negative n", quantizedCall({ n: -3 }), "n = -3 must be >= 0"],
  ["refuses a quantized unknown path", quantizedCall({ path: 7 }), "path = 7 is not one of"],
  ["refuses quantized flags other than PDL", quantizedCall({ flags: 4 }), "flags = 4 has bits other than MLA_KV_FLAG_PDL"],
  ["refuses a quantized misaligned loc", quantizedCall({ loc: locPtr(4) }), "is not aligned to its 8-byte elements"],
  ["refuses a quantized capacity of 0", quantizedCall({ capacity: 0 }), "capacity = 0 must be > 0"],
  ["refuses 16 rows a warp on the quantizing write", quantizedCall({ rows_per_warp: 16 }), "rows_per_warp = 16 must be"],
];

/** Good calls: NO_DEVICE from the library on a machine without a GPU, OK from the host fixture. */
const GOOD: Array<[string, WriteCall]> = [
  ["accepts the vector path", copyCall()],
  ["accepts the built-in rule with warps and rows 0", copyCall({ path: MLA_KV_PATH_AUTO, warps_per_block: 0, rows_per_warp: 0 })],
  ["accepts the spread path with the warps the row needs", copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 3 })],
  ["accepts the spread path with warps 0", copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 0 })],
  ["accepts the specialized path", copyCall({ path: MLA_KV_PATH_SPECIALIZED, warps_per_block: 8, rows_per_warp: 2 })],
  ["accepts a NULL rope of 0 bytes", copyCall({ rope: 0, rope_bytes: 0, rope_row_stride: 0, cache_row_stride: 1024 })],
  ["accepts n = 0", copyCall({ n: 0 })],
  ["accepts the last slot as the reserved one", copyCall({ reserved_slot: 63 })],
  ["accepts an int32 loc on a 4-byte boundary", copyCall({ loc: locPtr(4), loc_elem_bytes: 4 })],
  ["accepts a ds_mla write with the pow2 rule", quantizedCall({ scale_rule: MLA_KV_SCALE_POW2 })],
  ["accepts ds_mla ignoring a NaN scale", quantizedCall({ scale: NaN })],
  ["accepts an e4m3 write with a scale of 0.5", quantizedCall({ format: MLA_KV_FORMAT_FP8_E4M3, cache_row_stride: 576, scale: 0.5 })],
  ["accepts a flat write of no nope part and a NULL nope", quantizedCall({ format: MLA_KV_FORMAT_FP8_E5M2, nope: 0, nope_elems: 0, nope_row_stride: 0, cache_row_stride: 64 })],
  ["accepts a ds_v4 write with a padded page", quantizedCall({ format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, nope_row_stride: 896, page_size: 64, cache_row_stride: 37440, source_dtype: MLA_KV_SOURCE_FP16 })],
  ["accepts an indexer write with a NULL rope", quantizedCall({ format: MLA_KV_FORMAT_FP8_INDEXER, scale_rule: MLA_KV_SCALE_UE8M0, nope_elems: 128, nope_row_stride: 256, rope: 0, rope_elems: 0, rope_row_stride: 0, page_size: 16, cache_row_stride: 2112 })],
  ["accepts rope sources on their own 2-byte boundary", quantizedCall({ rope: ropePtr(2) })],
];

const host = hostLibrary();
// The library the package itself would load, as native_without_gpu.test.ts finds it.
const library = libraryCandidates({}).find((candidate) => existsSync(candidate.path))?.path;
const gpuVisible = existsSync("/dev/nvidiactl") || existsSync("/proc/driver/nvidia");

/** The results of a table's calls in one child process, made once on first use. */
function lazily<T>(make: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= make());
}

/** One test a bad call, all of them made in one child with `libraryPath` loaded. */
function refusesEveryBadCall(libraryPath: string) {
  const results = lazily(() => runWriteCalls(libraryPath, BAD.map(([, call]) => call), false));
  BAD.forEach(([sentence, , fragment], k) => {
    it(sentence, () => {
      expect(results()[k]!.status).toBe(MLA_KV_ERR_INVALID_ARGUMENT);
      expect(results()[k]!.message).toContain(fragment);
    });
  });
}

describe.skipIf(!host)(`the host fixture's writes${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  refusesEveryBadCall(host!);

  it("accepts every good call and writes with it (real allocations)", () => {
    const results = runWriteCalls(host!, GOOD.map(([, call]) => call), true);
    GOOD.forEach(([sentence], k) => expect({ sentence, ...results[k] }).toEqual({ sentence, status: MLA_KV_OK, message: "" }));
  });
});

const libraryReason = !library ? " (skipped: libmla_kv is not built; run `bun run build`)" : "";
describe.skipIf(!library)(`the built libmla_kv's writes, refused before it looks for a device${libraryReason}`, () => {
  refusesEveryBadCall(library!);

  it.skipIf(gpuVisible)("answers every good call with NO_DEVICE on a machine without a GPU", () => {
    const results = runWriteCalls(library!, GOOD.map(([, call]) => call), false);
    GOOD.forEach(([sentence], k) => expect({ sentence, status: results[k]!.status }).toEqual({ sentence, status: MLA_KV_ERR_NO_DEVICE }));
  });
});
