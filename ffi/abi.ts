/**
 * The constants of libmla_kv's C ABI (cuda/include/mla_kv.h), under the header's own names, and
 * the maps from the names the TypeScript API uses to their codes. Every list of paths, formats,
 * scale rules and source dtypes above this layer is derived from these maps (src/vocabulary.ts),
 * so adding one to the header is one edit here. tests/ffi/symbols.test.ts checks every
 * enumerator against the header.
 *
 * @module
 */

/** The version of the ABI this TypeScript code was written against (MLA_KV_ABI_VERSION). */
export const MLA_KV_ABI_VERSION = 4;

// ---- status codes -------------------------------------------------------------------------------
export const MLA_KV_OK = 0;
export const MLA_KV_ERR_INVALID_ARGUMENT = 1;
export const MLA_KV_ERR_UNSUPPORTED = 2;
export const MLA_KV_ERR_NO_DEVICE = 3;
export const MLA_KV_ERR_CUDA = 4;
export const MLA_KV_ERR_OUT_OF_RANGE_LOC = 5;

// ---- write paths --------------------------------------------------------------------------------
export const MLA_KV_PATH_AUTO = 0;
export const MLA_KV_PATH_VECTOR = 1;
export const MLA_KV_PATH_TMA = 2;
export const MLA_KV_PATH_SPECIALIZED = 3;
export const MLA_KV_PATH_SPREAD = 4;
/** The paths' codes by the names the TypeScript API gives them (AUTO is the C callers' rule). */
export const MLA_KV_PATH_CODES = {
  vector: MLA_KV_PATH_VECTOR,
  tma: MLA_KV_PATH_TMA,
  specialized: MLA_KV_PATH_SPECIALIZED,
  spread: MLA_KV_PATH_SPREAD,
} as const;

// ---- flags of mla_kv_set_kv_buffer ------------------------------------------------------------
export const MLA_KV_FLAG_PDL = 1;

// ---- the quantizing write: cache formats and source element types -----------------------------
export const MLA_KV_FORMAT_FP8_E4M3 = 1;
export const MLA_KV_FORMAT_FP8_E5M2 = 2;
export const MLA_KV_FORMAT_FP8_DS_MLA = 3;
export const MLA_KV_FORMAT_FP8_DS_V4 = 4;
export const MLA_KV_FORMAT_FP8_INDEXER = 5;
export const MLA_KV_SCALE_DEFAULT = 0;
export const MLA_KV_SCALE_POW2 = 1;
export const MLA_KV_SCALE_AMAX = 2;
export const MLA_KV_SCALE_UE8M0 = 3;
export const MLA_KV_SOURCE_BF16 = 1;
export const MLA_KV_SOURCE_FP16 = 2;
/** The quantizing formats', scale rules' and source dtypes' codes by their TypeScript names. */
export const MLA_KV_FORMAT_CODES = {
  fp8_e4m3: MLA_KV_FORMAT_FP8_E4M3,
  fp8_e5m2: MLA_KV_FORMAT_FP8_E5M2,
  fp8_ds_mla: MLA_KV_FORMAT_FP8_DS_MLA,
  fp8_ds_v4: MLA_KV_FORMAT_FP8_DS_V4,
  fp8_indexer: MLA_KV_FORMAT_FP8_INDEXER,
} as const;
export const MLA_KV_SCALE_RULE_CODES = { pow2: MLA_KV_SCALE_POW2, amax: MLA_KV_SCALE_AMAX, ue8m0: MLA_KV_SCALE_UE8M0 } as const;
export const MLA_KV_SOURCE_CODES = { bf16: MLA_KV_SOURCE_BF16, fp16: MLA_KV_SOURCE_FP16 } as const;

// ---- devices (property ids) ---------------------------------------------------------------------
export const MLA_KV_PROP_CC_MAJOR = 0;
export const MLA_KV_PROP_CC_MINOR = 1;
export const MLA_KV_PROP_SM_COUNT = 2;
export const MLA_KV_PROP_L2_BYTES = 3;
export const MLA_KV_PROP_SMEM_PER_BLOCK_OPTIN = 4;
export const MLA_KV_PROP_TOTAL_MEMORY = 5;
export const MLA_KV_PROP_DRIVER_VERSION = 6;
export const MLA_KV_PROP_RUNTIME_VERSION = 7;
export const MLA_KV_PROP_PCI_BUS_ID = 8;
export const MLA_KV_PROP_FREE_MEMORY = 9;

