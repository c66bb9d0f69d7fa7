import { describe, expect, it } from "bun:test";
import { MLA_KV_FORMAT_CODES, MLA_KV_OK, MLA_KV_PATH_CODES } from "../../ffi/abi.ts";
import {
  alignmentOf,
  pathBlocker,
  pathMayRun,
  runnablePaths,
  spreadWarps,
  tmaSharedBytes,
  type DeviceFacts,
  type WriteGeometry,
} from "../../src/eligibility.ts";
import { planSetMlaKvBuffer } from "../../src/layout.ts";
import { PATHS, SPECIALIZED_ROW_BYTES, type LaunchConfig, type WriteFormat } from "../../src/vocabulary.ts";
import { fake, fakeAddress } from "../helpers/fake_tensors.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { cachePtr, copyCall, nopePtr, quantizedCall, ropePtr, runWriteCalls, type WriteCall } from "../helpers/write_calls.ts";

/** An H100 or H200: sm_90, 227 KiB of shared memory a block may opt into. */
const HOPPER: DeviceFacts = { ccMajor: 9, smemPerBlockOptin: 232448 };
const AMPERE: DeviceFacts = { ccMajor: 8, smemPerBlockOptin: 166912 };

const copy = (rowBytes: number, alignment: WriteGeometry["alignment"] = 16): WriteGeometry => ({ format: "copy", rowBytes, alignment });
const of = (format: WriteFormat, rowBytes: number, alignment: WriteGeometry["alignment"] = 16): WriteGeometry => ({ format, rowBytes, alignment });
const launch = (path: LaunchConfig["path"], warps: LaunchConfig["warps"], rowsPerWarp: LaunchConfig["rowsPerWarp"] = 1): LaunchConfig => ({ path, warps, rowsPerWarp });

describe("tmaSharedBytes", () => {
  it("stages two 128-byte rounded rows a warp", () => {
    expect(tmaSharedBytes(1, 1152)).toBe(2 * 1152);
    expect(tmaSharedBytes(4, 1104)).toBe(4 * 2 * 1152);
    expect(tmaSharedBytes(16, 1)).toBe(16 * 2 * 128);
  });

  it("needs 264192 bytes for 8 warps of 16400-byte rows (a bf16 row of 8200 elements)", () => {
    expect(tmaSharedBytes(8, 16400)).toBe(264192);
    expect(tmaSharedBytes(4, 16400)).toBe(132096);
  });
});

describe("spreadWarps", () => {
  it("sizes a block by its row: one vector a thread, 32 threads a warp", () => {
    expect([1152, 1024, 656, 584, 576].map(spreadWarps)).toEqual([3, 2, 2, 3, 2]);
  });

  it("is null for a row size with no specialized kernels", () => {
    for (const row of [1, 512, 1000, 1104, 16400]) expect(spreadWarps(row)).toBeNull();
  });
});

describe("alignmentOf", () => {
  it("is the largest power of two up to 16 dividing every value", () => {
    expect(alignmentOf([1024, 128, 0x7f00_0000_0000])).toBe(16);
    expect(alignmentOf([1024, 120])).toBe(8);
    expect(alignmentOf([1024, 132])).toBe(4);
    expect(alignmentOf([1024, 2])).toBe(2);
    expect(alignmentOf([1024, 1025])).toBe(1);
    expect(alignmentOf([32, 64, 4096])).toBe(16);
  });

  it("reads the low bits of addresses above 2^32, where | on numbers would cut them", () => {
    expect(alignmentOf([2 ** 40 + 8])).toBe(8);
    expect(alignmentOf([2 ** 47 + 2 ** 33 + 4])).toBe(4);
    expect(alignmentOf([2 ** 52])).toBe(16);
  });

  it("is 16 for no values at all", () => {
    expect(alignmentOf([])).toBe(16);
  });
});

describe("pathBlocker", () => {
  // [sentence, launch, device, write, a fragment of the reason, or null when it may run]
  const cases: Array<[string, LaunchConfig, DeviceFacts, WriteGeometry, string | null]> = [
    ["lets the vector path run any write", launch("vector", 4), AMPERE, copy(1000, 1), null],
    ["lets the vector path run a paged write", launch("vector", 16, 4), HOPPER, of("fp8_ds_v4", 576, 8), null],
    ["refuses the vector path with warps 0", launch("vector", 0), HOPPER, copy(1152), "the vector path needs warps 1, 2, 4, 8 or 16"],
    ["lets TMA run an aligned copy on sm_90", launch("tma", 8), HOPPER, copy(1152), null],
    ["refuses TMA before sm_90, naming the GPU's architecture", launch("tma", 8), AMPERE, copy(1152), "the TMA path needs sm_90 or newer; this GPU is sm_8x"],
    ["refuses TMA for a paged format", launch("tma", 4), HOPPER, of("fp8_indexer", 128), "the TMA path writes whole rows; a fp8_indexer page is not one"],
    ["refuses TMA for a copy aligned to 8", launch("tma", 4), HOPPER, copy(1152, 8), "the TMA path needs every address, row stride and row size to be multiples of 16 bytes; this write is aligned to 8"],
    ["refuses TMA for a quantizing write aligned to 8, naming the cache side", launch("tma", 4), HOPPER, of("fp8_e4m3", 520, 8), "the TMA path needs the cache address, its row stride and the row size to be multiples of 16 bytes; this write is aligned to 8"],
    ["lets TMA run a ds_mla row", launch("tma", 16), HOPPER, of("fp8_ds_mla", 656), null],
    ["refuses TMA with warps 0", launch("tma", 0), HOPPER, copy(1152), "the TMA path needs warps 1, 2, 4, 8 or 16"],
    ["lets TMA run when its stages fill the shared memory exactly", launch("tma", 4), { ccMajor: 9, smemPerBlockOptin: 9216 }, copy(1104), null],
    [
      "refuses TMA when its 128-byte rounded stages need one byte more than the device allows",
      launch("tma", 4),
      { ccMajor: 9, smemPerBlockOptin: 9215 },
      copy(1104),
      "the TMA path would stage 9216 bytes of shared memory per block (4 warps x 2 rows of 1104 bytes); the device allows 9215",
    ],
    [
      "refuses TMA with 8 warps for a 16400-byte row, which needs 264192 bytes where an H100 has 232448",
      launch("tma", 8),
      HOPPER,
      copy(16400),
      "the TMA path would stage 264192 bytes of shared memory per block (8 warps x 2 rows of 16400 bytes); the device allows 232448",
    ],
    ["lets TMA with 4 warps run that 16400-byte row", launch("tma", 4), HOPPER, copy(16400), null],
    ["refuses the specialized path for a quantizing write", launch("specialized", 4), HOPPER, of("fp8_ds_mla", 656), "the specialized path copies rows; a fp8_ds_mla write converts them"],
    ["refuses the spread path for a quantizing write", launch("spread", 0), HOPPER, of("fp8_e4m3", 576), "the spread path copies rows; a fp8_e4m3 write converts them"],
    ["refuses the specialized path for a row size with no kernels, listing the five", launch("specialized", 4), HOPPER, copy(1000), "this row has 1000"],
    ["refuses the spread path with warps, since the row sizes its block", launch("spread", 2), HOPPER, copy(576), "the spread path sizes its blocks by the row (2 warps for 576 bytes); pass warps 0, not 2"],
    ["refuses the specialized path with warps 0", launch("specialized", 0), HOPPER, copy(1152), "the specialized path needs warps 1, 2, 4, 8 or 16"],
    ["lets the specialized and spread paths run before sm_90", launch("specialized", 2, 4), AMPERE, copy(656), null],
  ];
  for (const [sentence, config, device, write, fragment] of cases) {
    it(sentence, () => {
      const why = pathBlocker(config, device, write);
      if (fragment === null) expect(why).toBeNull();
      else expect(why).toContain(fragment);
      expect(pathMayRun(config, device, write)).toBe(fragment === null);
    });
  }

  it("lists every specialized row size when it refuses one", () => {
    const why = pathBlocker(launch("spread", 0), HOPPER, copy(928))!;
    for (const row of Object.keys(SPECIALIZED_ROW_BYTES)) expect(why).toContain(row);
    expect(why).toStartWith("the spread path has kernels for rows of ");
  });

  describe("for each of the five specialized row sizes", () => {
    for (const [row, width] of Object.entries(SPECIALIZED_ROW_BYTES).map(([r, w]) => [Number(r), w] as const)) {
      it(`lets the specialized and spread paths copy ${row}-byte rows aligned to ${width}, and refuses them aligned to ${width / 2}`, () => {
        for (const config of [launch("specialized", 4), launch("specialized", 16, 4), launch("spread", 0), launch("spread", 0, 4)]) {
          expect(pathBlocker(config, HOPPER, copy(row, width))).toBeNull();
          expect(pathBlocker(config, AMPERE, copy(row, 16))).toBeNull();
          expect(pathBlocker(config, HOPPER, copy(row, (width / 2) as 4 | 8))).toBe(
            `the ${config.path} path for ${row}-byte rows needs every address, row stride and row size to be multiples of ${width} bytes; this write is aligned to ${width / 2}`,
          );
        }
      });

      it(`refuses a spread launch of ${row}-byte rows with any warp count, naming the ${spreadWarps(row)} the row takes`, () => {
        for (const warps of [1, 2, 4, 8, 16] as const) {
          expect(pathBlocker(launch("spread", warps), HOPPER, copy(row, width))).toContain(`(${spreadWarps(row)} warps for ${row} bytes); pass warps 0, not ${warps}`);
        }
      });
    }
  });
});

describe("runnablePaths", () => {
  it("gives every path for an aligned specialized row on sm_90, in path order", () => {
    expect(runnablePaths(PATHS, HOPPER, copy(1152))).toEqual(["vector", "tma", "specialized", "spread"]);
  });

  it("drops TMA before sm_90", () => {
    expect(runnablePaths(PATHS, AMPERE, copy(1152))).toEqual(["vector", "specialized", "spread"]);
  });

  it("drops the specialized designs for a row size they have no kernels for", () => {
    expect(runnablePaths(PATHS, HOPPER, copy(1280))).toEqual(["vector", "tma"]);
  });

  it("keeps the specialized designs of a 584-byte row aligned to 8, but not TMA", () => {
    expect(runnablePaths(PATHS, HOPPER, copy(584, 8))).toEqual(["vector", "specialized", "spread"]);
  });

  it("leaves only vector and TMA to a ds_mla write, and only vector to a paged one", () => {
    expect(runnablePaths(PATHS, HOPPER, of("fp8_ds_mla", 656))).toEqual(["vector", "tma"]);
    expect(runnablePaths(PATHS, HOPPER, of("fp8_ds_v4", 576))).toEqual(["vector"]);
  });

  it("keeps TMA for a row whose 8-warp stages do not fit, since fewer warps do", () => {
    expect(runnablePaths(PATHS, HOPPER, copy(16400))).toEqual(["vector", "tma"]);
  });

  it("keeps only the paths it was given", () => {
    expect(runnablePaths(["vector", "spread"], HOPPER, copy(1152))).toEqual(["vector", "spread"]);
  });
});

// One table of writes through both rules: this module's, from a plan of the same buffers, and the
// library's (cuda/checks.h, which the host fixture compiles), from the C call. Buffers start
// 256-byte aligned on both sides, so the byte offsets below set the alignment alike.
interface Device {
  cc?: number;
  smem?: number;
}
interface CopyCase {
  nope: number;
  rope: number;
  /** Bytes into its allocation kNope starts. */
  nopeOffset: number;
}
interface QuantizedCase {
  format: "fp8_e4m3" | "fp8_ds_mla" | "fp8_ds_v4";
  nopeElems: number;
  ropeElems: number;
  /** Bytes between cache rows (pages, for fp8_ds_v4). */
  cacheStride: number;
  cacheOffset: number;
}

const DEVICES: Device[] = [{}, { cc: 8 }, { cc: 10 }, { smem: 9216 }, { smem: 9215 }, { smem: 1024 }];
const LAUNCHES: LaunchConfig[] = [
  launch("vector", 4),
  launch("tma", 1),
  launch("tma", 4),
  launch("tma", 8),
  launch("tma", 16, 2),
  launch("specialized", 4),
  launch("specialized", 16, 2),
  launch("spread", 0),
  launch("spread", 0, 4),
];
const COPIES: CopyCase[] = [
  ...[
    [1024, 128],
    [896, 128],
    [528, 128],
    [456, 128],
    [448, 128],
    [872, 128],
    [976, 128],
    [16384, 16],
    [1024, 0],
  ].flatMap(([nope, rope]) => [0, 8, 4, 2].map((nopeOffset) => ({ nope: nope!, rope: rope!, nopeOffset }))),
];
const QUANTIZED: QuantizedCase[] = [
  { format: "fp8_ds_mla", nopeElems: 512, ropeElems: 64, cacheStride: 656, cacheOffset: 0 },
  { format: "fp8_ds_mla", nopeElems: 512, ropeElems: 64, cacheStride: 664, cacheOffset: 0 },
  { format: "fp8_ds_mla", nopeElems: 512, ropeElems: 64, cacheStride: 656, cacheOffset: 4 },
  { format: "fp8_e4m3", nopeElems: 512, ropeElems: 64, cacheStride: 576, cacheOffset: 0 },
  { format: "fp8_e4m3", nopeElems: 512, ropeElems: 8, cacheStride: 520, cacheOffset: 0 },
  { format: "fp8_ds_v4", nopeElems: 448, ropeElems: 64, cacheStride: 37440, cacheOffset: 0 },
];
const SLOTS = 8;
const PAGE = 64;

/** The geometry this module sees for a copy case: a plan of fake tensors laid out as the C call's buffers. */
function copyGeometry(c: CopyCase) {
  const row = c.nope + c.rope;
  return planSetMlaKvBuffer(
    fake("u8", [SLOTS, row]),
    fake("i64", [2]),
    fake("u8", [2, c.nope], { ptr: fakeAddress(9000) + c.nopeOffset }),
    fake("u8", [2, c.rope]),
  );
}

function copyCallOf(c: CopyCase, config: LaunchConfig): WriteCall {
  const row = c.nope + c.rope;
  return copyCall({
    capacity: SLOTS,
    cache_row_stride: row,
    nope: nopePtr(c.nopeOffset),
    nope_row_stride: c.nope,
    nope_bytes: c.nope,
    rope: c.rope === 0 ? 0 : ropePtr(),
    rope_row_stride: c.rope,
    rope_bytes: c.rope,
    path: MLA_KV_PATH_CODES[config.path],
    warps_per_block: config.warps,
    rows_per_warp: config.rowsPerWarp,
  });
}

function quantizedGeometry(q: QuantizedCase) {
  const paged = q.format === "fp8_ds_v4";
  const cacheDtype = q.format === "fp8_e4m3" ? "fp8_e4m3" : "u8";
  const cache = fake(cacheDtype, [paged ? 1 : SLOTS, q.cacheStride], { ptr: fakeAddress(9100) + q.cacheOffset });
  return planSetMlaKvBuffer(cache, fake("i64", [2]), fake("bf16", [2, q.nopeElems]), fake("bf16", [2, q.ropeElems]), {
    format: q.format === "fp8_e4m3" ? "fp8" : q.format,
    ...(paged ? { pageSize: PAGE } : {}),
  });
}

function quantizedCallOf(q: QuantizedCase, config: LaunchConfig): WriteCall {
  const paged = q.format === "fp8_ds_v4";
  return quantizedCall({
    format: MLA_KV_FORMAT_CODES[q.format],
    cache: cachePtr(q.cacheOffset),
    capacity: paged ? PAGE : SLOTS,
    cache_row_stride: q.cacheStride,
    page_size: paged ? PAGE : 0,
    nope_row_stride: 2 * q.nopeElems,
    nope_elems: q.nopeElems,
    rope_row_stride: 2 * q.ropeElems,
    rope_elems: q.ropeElems,
    path: MLA_KV_PATH_CODES[config.path],
    warps_per_block: config.warps,
    rows_per_warp: config.rowsPerWarp,
  });
}

const host = hostLibrary();
describe.skipIf(!host)(`pathMayRun against the library's path rule on the host fixture${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const envOf = (d: Device): Record<string, string> => ({
    ...(d.cc === undefined ? {} : { HOST_MLA_KV_CC_MAJOR: String(d.cc) }),
    ...(d.smem === undefined ? {} : { HOST_MLA_KV_SMEM_OPTIN: String(d.smem) }),
  });
  const factsOf = (d: Device): DeviceFacts => ({ ccMajor: d.cc ?? 9, smemPerBlockOptin: d.smem ?? 232448 });

  for (const device of DEVICES) {
    it(`agrees on which launches may run every copy and quantizing write on a device with ${JSON.stringify(device)}`, () => {
      const facts = factsOf(device);
      const cases = [
        ...COPIES.flatMap((c) => LAUNCHES.map((config) => ({ what: `copy ${c.nope}+${c.rope} at +${c.nopeOffset}`, config, geometry: copyGeometry(c), call: copyCallOf(c, config) }))),
        ...QUANTIZED.flatMap((q) => LAUNCHES.map((config) => ({ what: `${q.format} stride ${q.cacheStride} at +${q.cacheOffset}`, config, geometry: quantizedGeometry(q), call: quantizedCallOf(q, config) }))),
      ];
      const results = runWriteCalls(host!, cases.map((c) => c.call), true, envOf(device));
      const disagreements = cases.flatMap((c, i) => {
        const library = results[i]!.status === MLA_KV_OK;
        const ours = pathMayRun(c.config, facts, c.geometry);
        return library === ours ? [] : [`${c.what}, ${JSON.stringify(c.config)}: library ${library ? "runs it" : `refuses (${results[i]!.message})`}, pathBlocker says ${pathBlocker(c.config, facts, c.geometry) ?? "it runs"}`];
      });
      expect(disagreements).toEqual([]);
      // Not a vacuous agreement: both kinds of answer occur on every device.
      expect(results.some((r) => r.status === MLA_KV_OK)).toBe(true);
      expect(results.some((r) => r.status !== MLA_KV_OK)).toBe(true);
    });
  }
});
