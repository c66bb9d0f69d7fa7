/**
 * Which path can run which write (mla_kv_path_blocker in cuda/checks.h), through the host
 * fixture, whose device is set by HOST_MLA_KV_CC_MAJOR and HOST_MLA_KV_SMEM_OPTIN. The library
 * runs the same function after its device check, so these cases need no GPU to pin the rule down.
 */
import { describe, expect, it } from "bun:test";
import {
  MLA_KV_ERR_UNSUPPORTED,
  MLA_KV_FORMAT_FP8_DS_V4,
  MLA_KV_OK,
  MLA_KV_PATH_AUTO,
  MLA_KV_PATH_SPECIALIZED,
  MLA_KV_PATH_SPREAD,
  MLA_KV_PATH_TMA,
} from "../../ffi/abi.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { copyCall, nopePtr, quantizedCall, runWriteCalls, type WriteCall } from "../helpers/write_calls.ts";

interface Device {
  cc?: number;
  smem?: number;
}
/** [sentence, device, call, status, fragment of the message ("" for OK)] */
const CASES: Array<[string, Device, WriteCall, number, string]> = [
  ["runs the vector path on any GPU", { cc: 7 }, copyCall({ nope_row_stride: 1025 }), MLA_KV_OK, ""],
  ["refuses TMA below sm_90", { cc: 8 }, copyCall({ path: MLA_KV_PATH_TMA, warps_per_block: 8 }), MLA_KV_ERR_UNSUPPORTED, "MLA_KV_PATH_TMA needs sm_90 or newer; this device is sm_80"],
  ["runs TMA on sm_90 for a 16-byte aligned write", { cc: 9 }, copyCall({ path: MLA_KV_PATH_TMA, warps_per_block: 16 }), MLA_KV_OK, ""],
  [
    "refuses TMA for a write with an 8-byte rope part",
    {},
    copyCall({ path: MLA_KV_PATH_TMA, rope_bytes: 120 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_TMA needs every address, stride and size to be multiples of 16 bytes; this write is aligned to 8",
  ],
  ["refuses TMA for a source row stride aligned to 8", {}, copyCall({ path: MLA_KV_PATH_TMA, nope_row_stride: 1032 }), MLA_KV_ERR_UNSUPPORTED, "this write is aligned to 8"],
  ["refuses TMA for a source address aligned to 2", {}, copyCall({ path: MLA_KV_PATH_TMA, nope: nopePtr(2) }), MLA_KV_ERR_UNSUPPORTED, "this write is aligned to 2"],
  [
    "lets a NULL rope of 0 bytes, whatever its stride, leave the alignment to the other parts",
    {},
    copyCall({ path: MLA_KV_PATH_TMA, rope: 0, rope_bytes: 0, rope_row_stride: 3, cache_row_stride: 1024 }),
    MLA_KV_OK,
    "",
  ],
  // 976 + 128 = 1104 bytes: a 1152-byte stage (rounded to 128), two a warp, 4 warps = 9216 bytes.
  ["runs TMA when its stages fill the shared memory exactly", { smem: 9216 }, copyCall({ path: MLA_KV_PATH_TMA, nope_bytes: 976, cache_row_stride: 1104 }), MLA_KV_OK, ""],
  [
    "refuses TMA when its stages, rounded to 128 bytes, need one byte more than the device has",
    { smem: 9215 },
    copyCall({ path: MLA_KV_PATH_TMA, nope_bytes: 976, cache_row_stride: 1104 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_TMA with 4 warps stages 2 rows of 1104 bytes a warp in shared memory; the device allows 9215 bytes a block",
  ],
  ["refuses TMA for a row larger than the shared memory", { smem: 1024 }, copyCall({ path: MLA_KV_PATH_TMA, warps_per_block: 1 }), MLA_KV_ERR_UNSUPPORTED, "the device allows 1024 bytes a block"],
  ["runs the specialized path for a 1152-byte row", { cc: 7 }, copyCall({ path: MLA_KV_PATH_SPECIALIZED }), MLA_KV_OK, ""],
  [
    "refuses the specialized path for a row size it has no kernel for",
    {},
    copyCall({ path: MLA_KV_PATH_SPECIALIZED, nope_bytes: 872, cache_row_stride: 1000 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_SPECIALIZED has kernels for rows of 1152, 1024, 656, 584 and 576 bytes; this row has 1000",
  ],
  [
    "refuses the specialized path for a 1152-byte row aligned to 8 only",
    {},
    copyCall({ path: MLA_KV_PATH_SPECIALIZED, nope_row_stride: 1032 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_SPECIALIZED for 1152-byte rows uses 16-byte vectors; this write is aligned to 8",
  ],
  ["runs the specialized path for a 584-byte row aligned to 8, its vector width", {}, copyCall({ path: MLA_KV_PATH_SPECIALIZED, nope_bytes: 456, nope_row_stride: 456, cache_row_stride: 584 }), MLA_KV_OK, ""],
  [
    "refuses the specialized path for a 584-byte row aligned to 4",
    {},
    copyCall({ path: MLA_KV_PATH_SPECIALIZED, nope_bytes: 456, nope_row_stride: 456, cache_row_stride: 584, rope_row_stride: 132 }),
    MLA_KV_ERR_UNSUPPORTED,
    "for 584-byte rows uses 8-byte vectors; this write is aligned to 4",
  ],
  ["runs the spread path for a 576-byte row with 2 warps", {}, copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 2, nope_bytes: 448, nope_row_stride: 448, cache_row_stride: 576 }), MLA_KV_OK, ""],
  ["runs the spread path for a 584-byte row with 3 warps", {}, copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 3, nope_bytes: 456, nope_row_stride: 456, cache_row_stride: 584 }), MLA_KV_OK, ""],
  [
    "refuses the spread path for a row size it has no kernel for",
    {},
    copyCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 0, nope_bytes: 896, rope_bytes: 32, cache_row_stride: 928 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_SPREAD has kernels for rows of 1152, 1024, 656, 584 and 576 bytes; this row has 928",
  ],
  [
    "refuses the specialized path for a quantizing write",
    {},
    quantizedCall({ path: MLA_KV_PATH_SPECIALIZED }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_SPECIALIZED copies bytes; the quantizing write runs on MLA_KV_PATH_VECTOR or MLA_KV_PATH_TMA",
  ],
  ["refuses the spread path for a quantizing write", {}, quantizedCall({ path: MLA_KV_PATH_SPREAD, warps_per_block: 2 }), MLA_KV_ERR_UNSUPPORTED, "MLA_KV_PATH_SPREAD copies bytes"],
  ["runs the quantizing TMA path for a 656-byte ds_mla row on sm_90", {}, quantizedCall({ path: MLA_KV_PATH_TMA, nope: nopePtr(2) }), MLA_KV_OK, ""],
  ["refuses the quantizing TMA path below sm_90", { cc: 8 }, quantizedCall({ path: MLA_KV_PATH_TMA }), MLA_KV_ERR_UNSUPPORTED, "needs sm_90 or newer; this device is sm_80"],
  [
    "refuses the quantizing TMA path for a cache row stride aligned to 8",
    {},
    quantizedCall({ path: MLA_KV_PATH_TMA, cache_row_stride: 664 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_TMA needs the cache address, its row stride and the row size to be multiples of 16 bytes; this write is aligned to 8",
  ],
  [
    "refuses the quantizing TMA path for a paged format",
    {},
    quantizedCall({ path: MLA_KV_PATH_TMA, format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, page_size: 64, cache_row_stride: 37440 }),
    MLA_KV_ERR_UNSUPPORTED,
    "MLA_KV_PATH_TMA writes rows; a paged format's pages are not rows",
  ],
  ["chooses a path that runs for the built-in rule below sm_90", { cc: 7 }, copyCall({ path: MLA_KV_PATH_AUTO, warps_per_block: 0, rows_per_warp: 0, n: 1000, rope_bytes: 120 }), MLA_KV_OK, ""],
  ["chooses a path that runs for the built-in rule with little shared memory", { smem: 4096 }, copyCall({ path: MLA_KV_PATH_AUTO, warps_per_block: 0, rows_per_warp: 0, n: 1000 }), MLA_KV_OK, ""],
  [
    "chooses a path that runs for the built-in rule on a paged format",
    {},
    quantizedCall({ path: MLA_KV_PATH_AUTO, warps_per_block: 0, rows_per_warp: 0, n: 1000, format: MLA_KV_FORMAT_FP8_DS_V4, nope_elems: 448, page_size: 64, cache_row_stride: 37440 }),
    MLA_KV_OK,
    "",
  ],
];

const host = hostLibrary();
const envOf = (device: Device): Record<string, string> => ({
  ...(device.cc === undefined ? {} : { HOST_MLA_KV_CC_MAJOR: String(device.cc) }),
  ...(device.smem === undefined ? {} : { HOST_MLA_KV_SMEM_OPTIN: String(device.smem) }),
});

describe.skipIf(!host)(`the path rule on the host fixture's device${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  // One child for each device the cases name; a case's result is looked up when its test runs.
  const results = new Map<string, Array<{ status: number; message: string }>>();
  const resultOf = (k: number) => {
    const key = JSON.stringify(CASES[k]![1]);
    if (!results.has(key)) {
      const group = CASES.map((c, i) => [c, i] as const).filter(([c]) => JSON.stringify(c[1]) === key);
      const out = runWriteCalls(host!, group.map(([c]) => c[2]), true, envOf(CASES[k]![1]));
      const byIndex: Array<{ status: number; message: string }> = [];
      group.forEach(([, i], j) => (byIndex[i] = out[j]!));
      results.set(key, byIndex);
    }
    return results.get(key)![k]!;
  };

  CASES.forEach(([sentence, , , status, fragment], k) => {
    it(sentence, () => {
      const result = resultOf(k);
      expect(result.status).toBe(status);
      if (status === MLA_KV_OK) expect(result.message).toBe("");
      else expect(result.message).toContain(fragment);
    });
  });
});
