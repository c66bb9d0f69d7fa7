/*
 * fp8_rules.h — the conversion rules and byte layouts of the quantizing formats, written once.
 *
 * Plain C99 that nvcc also compiles as __host__ __device__ code, so that the kernels
 * (quantize_fp8.cuh) and the CPU implementation of the ABI used by the tests
 * (tests/ffi/fixtures/host_quantize.h) share one definition of every scale rule, every rounding
 * and every offset inside a row or page. The kernels convert elements with the hardware's cvt instructions;
 * the software encoders below define what those must produce, and the GPU suite checks that they
 * do (both against the TypeScript reference, tests/helpers/fp8_reference.ts, written separately
 * from the same rules).
 *
 * The edge cases, the same in every format (the README repeats them for callers):
 *   NaN          stays NaN with its sign: e4m3 and e5m2 0x7F, or 0xFF when the source's sign bit
 *                is set (e5m2 has other NaN codes; this one is chosen so both formats agree). NaN
 *                is decided on the source bits, because arithmetic on a NaN may drop its sign.
 *   +-inf        saturates to +-the largest finite value (e4m3 448 = 0x7E/0xFE, e5m2 57344 =
 *                0x7B/0xFB). No fp8 infinity is written: readers multiply by a scale, and a
 *                saturated value keeps the row usable where an infinity would poison a softmax.
 *   past range   any quotient with |q| >= the largest finite value saturates to it (the same
 *                rule, and what cvt.rn.satfinite does).
 *   subnormals   source subnormals are exact in fp32 and are divided and rounded like any other
 *                value; fp8 subnormals are produced (round to nearest, ties to even).
 *   -0           keeps its sign: 0x80; so do negative values that round to zero.
 *   amax         a tile's amax is the largest |x| over its finite elements: NaN and +-inf do not
 *                count, so one bad element does not flatten the rest of its tile to zero.
 *   all-zero     (no finite non-zero element) and tiny-amax tiles: see each scale rule below.
 */
#ifndef MLA_KV_FP8_RULES_H_
#define MLA_KV_FP8_RULES_H_

#include <stdint.h>
#include <string.h>

#include "include/mla_kv.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define MLA_KV_HD static __host__ __device__ __forceinline__
#else
#define MLA_KV_HD static inline
#endif

/* ---- byte layouts ------------------------------------------------------------------------- */
/* The offsets inside a row or a page that the writers of each format need. (Which formats are
 * paged, a page's size and which scale rules a format accepts are argument checks, not conversion
 * rules; the argument checks own them.) */

/* fp8_ds_mla (DeepSeek V3.2 sparse MLA), one 656-byte row a slot:
 *   [512 x e4m3 nope | 4 x fp32 scales, one per 128-element tile | 64 x bf16 rope]. */
#define MLA_KV_DS_MLA_NOPE_ELEMS 512
#define MLA_KV_DS_MLA_ROPE_ELEMS 64
#define MLA_KV_DS_MLA_TILE_ELEMS 128
#define MLA_KV_DS_MLA_SCALES_OFFSET 512
#define MLA_KV_DS_MLA_ROPE_OFFSET 528
#define MLA_KV_DS_MLA_ROW_BYTES 656

/* fp8_ds_v4 (DeepSeek V4), paged. A page of page_size tokens holds all its token rows
 *   [448 x e4m3 nope | 64 x bf16 rope]                       576 B, token t at t * 576,
 * then all its tokens' scale words
 *   [7 x e8m0 scales, one per 64-element tile | 1 pad byte]  8 B, token t at page_size * 576 + t * 8,
 * and the page is padded to a multiple of 576 B. The pad byte and the padding are never written. */
#define MLA_KV_DS_V4_NOPE_ELEMS 448
#define MLA_KV_DS_V4_ROPE_ELEMS 64
#define MLA_KV_DS_V4_TILE_ELEMS 64
#define MLA_KV_DS_V4_TILES 7
#define MLA_KV_DS_V4_TOKEN_BYTES 576
#define MLA_KV_DS_V4_SCALE_BYTES 8

/* fp8_indexer (the sparse-attention indexer's K cache), paged. A page holds all its tokens' 128
 * e4m3 values (token t at t * 128), then all their fp32 scales (token t at page_size * 128 + t * 4):
 * page_size * 132 bytes, no padding. */
#define MLA_KV_INDEXER_ELEMS 128
#define MLA_KV_INDEXER_SCALE_BYTES 4
#define MLA_KV_INDEXER_TOKEN_BYTES 132

/* ---- bits ----------------------------------------------------------------------------------- */

MLA_KV_HD uint32_t mla_kv_f32_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

MLA_KV_HD float mla_kv_f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

/* An IEEE fp32 division rounded to nearest even, on the device whatever the compiler flags. */
MLA_KV_HD float mla_kv_div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

/* ---- 16-bit sources ------------------------------------------------------------------------- */

MLA_KV_HD int mla_kv_bf16_is_nan(uint32_t bits) { return (bits & 0x7fffu) > 0x7f80u; }
MLA_KV_HD int mla_kv_fp16_is_nan(uint32_t bits) { return (bits & 0x7fffu) > 0x7c00u; }

/* bf16 is the top half of an fp32: exact. */
MLA_KV_HD float mla_kv_bf16_to_f32(uint32_t bits) { return mla_kv_f32_from_bits((bits & 0xffffu) << 16); }

/* IEEE binary16 to fp32, exact for every non-NaN pattern. On the device the hardware conversion
 * (one instruction); on the host the same by hand, where NaN also keeps its sign and payload. A NaN
 * is never used as a value: every caller decides NaN on the source bits first. */
MLA_KV_HD float mla_kv_fp16_to_f32(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half((unsigned short)bits));
#else
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1fu) return mla_kv_f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0u) {
    /* mantissa x 2^-24: both factors exact in fp32, so is the product. */
    const float magnitude = (float)mantissa * 5.9604644775390625e-8f;
    return mla_kv_f32_from_bits(sign | mla_kv_f32_bits(magnitude));
  }
  return mla_kv_f32_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
#endif
}

MLA_KV_HD float mla_kv_source_to_f32(uint32_t bits, int fp16) {
  return fp16 ? mla_kv_fp16_to_f32(bits) : mla_kv_bf16_to_f32(bits);
}

MLA_KV_HD int mla_kv_source_is_nan(uint32_t bits, int fp16) {
  return fp16 ? mla_kv_fp16_is_nan(bits) : mla_kv_bf16_is_nan(bits);
}

/* fp32 to bf16, round to nearest even (carrying into the exponent, up to inf); NaN becomes the
 * quiet NaN 0x7FC0 with the sign of `x`'s bits. */
MLA_KV_HD uint32_t mla_kv_f32_to_bf16(float x) {
  const uint32_t u = mla_kv_f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u | ((u >> 16) & 0x8000u);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* The rope part of ds_mla and ds_v4 is bf16: bf16 sources are kept bit for bit (NaN payloads
 * included), fp16 ones rounded to nearest even; an fp16 NaN becomes 0x7FC0 with its sign. fp16 is
 * exact in fp32, so this is the one rounding fp16 -> bf16. */
MLA_KV_HD uint32_t mla_kv_rope_to_bf16(uint32_t bits, int fp16) {
  if (!fp16) return bits & 0xffffu;
  if (mla_kv_fp16_is_nan(bits)) return 0x7fc0u | (bits & 0x8000u);
  return mla_kv_f32_to_bf16(mla_kv_fp16_to_f32(bits));
}

/* ---- fp8 encoding --------------------------------------------------------------------------- */

/* fp32 to an fp8 format with `mantissa_bits` and `bias`: round to nearest, ties to even,
 * subnormals included; |q| >= max_value (and +-inf) saturates to max_code; NaN is 0x7F with the
 * sign; the sign of zero is kept. Codes of adjacent finite values differ by one, so rounding the
 * fp32 pattern's dropped bits carries into the fp8 exponent exactly as the value does. */
MLA_KV_HD uint32_t mla_kv_f32_to_fp8(float q, int mantissa_bits, int bias, uint32_t max_code, float max_value) {
  const uint32_t u = mla_kv_f32_bits(q);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7fu;
  if (a >= mla_kv_f32_bits(max_value)) return sign | max_code;
  const uint32_t exponent = a >> 23;
  if (exponent >= (uint32_t)(128 - bias)) {
    /* A normal fp8 value: keep `mantissa_bits` of the fp32 mantissa, rounding the rest. Below
     * max_value the rounding reaches at most max_code. */
    const int drop = 23 - mantissa_bits;
    const uint32_t rounded = a + ((1u << (drop - 1)) - 1u) + ((a >> drop) & 1u);
    return sign | ((rounded - ((uint32_t)(127 - bias) << 23)) >> drop);
  }
  /* An fp8 subnormal (or zero): the value in units of the smallest subnormal, 2^(1-bias-m). An
   * fp32 subnormal is far below half that unit and gives zero. */
  if (exponent == 0u) return sign;
  const uint32_t shift = (uint32_t)(151 - bias - mantissa_bits) - exponent; /* >= 24 - mantissa_bits */
  if (shift > 24u) return sign; /* below half a unit */
  const uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
  const uint32_t kept = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  return sign | (kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u));
}

#define MLA_KV_E4M3_MAX 448.0f
#define MLA_KV_E5M2_MAX 57344.0f

/* OCP E4M3FN: bias 7, 3 mantissa bits, 0x7F/0xFF the only NaN, no infinity. */
MLA_KV_HD uint32_t mla_kv_f32_to_e4m3(float q) { return mla_kv_f32_to_fp8(q, 3, 7, 0x7eu, MLA_KV_E4M3_MAX); }
/* e5m2: bias 15, 2 mantissa bits. */
MLA_KV_HD uint32_t mla_kv_f32_to_e5m2(float q) { return mla_kv_f32_to_fp8(q, 2, 15, 0x7bu, MLA_KV_E5M2_MAX); }

/* One source element to fp8: NaN from the source bits (sign kept), else fp8(x / divisor) with an
 * IEEE fp32 division. A power-of-two divisor gives the same quotient as a multiplication by its
 * reciprocal (both are the exact quotient rounded once), which is what the kernels do for it. */
MLA_KV_HD uint32_t mla_kv_quantize_element(uint32_t bits, int fp16, float divisor, int e5m2) {
  if (mla_kv_source_is_nan(bits, fp16)) return 0x7fu | ((bits >> 8) & 0x80u);
  const float q = mla_kv_div_rn(mla_kv_source_to_f32(bits, fp16), divisor);
  return e5m2 ? mla_kv_f32_to_e5m2(q) : mla_kv_f32_to_e4m3(q);
}

/* ---- tile scales ---------------------------------------------------------------------------- */
/*
 * amax is a tile's largest finite |x| (>= 0, finite). Each rule gives the fp32 scale stored (or,
 * for ds_v4, its exponent byte); elements are stored as e4m3(x / scale) and read back as
 * e4m3 x scale.
 *
 * POW2 (ds_mla's default, ds_v4's only rule): scale = 2^ceil(log2(max(amax / 448, 1e-4))), with
 *   amax / 448 an fp32 division and 1e-4 the fp32 constant. A power of two, so it is exact in
 *   fp32, bf16 and e8m0, and the quotient is a multiplication by its exact reciprocal. The tile's
 *   largest element lands in (224, 448]. An all-zero tile, and any tile with amax < 0.0448, gets
 *   the floor 2^-13: its elements are multiplied by 8192, zeros stay signed zeros, inf saturates
 *   to +-448, NaN stays NaN, and nothing finite can pass 448 (amax x 8192 < 367).
 * AMAX (ds_mla): scale = amax / 448 (fp32 division), the tile's largest element landing on 448.
 *   An all-zero tile stores scale 0 and its elements are converted as if the scale were 1 (zeros
 *   stay zeros, inf saturates, NaN stays NaN; a reader multiplying by 0 gets 0 where finite). A
 *   tiny amax (below 2^-117, bf16 sources only) gives an fp32 subnormal scale; the division is
 *   still one IEEE division, and the largest element may saturate at 448 since the scale was
 *   rounded.
 * AMAX (indexer, its default): scale = max(amax, 1e-4) / 448 (fp32): never 0 and always normal;
 *   an all-zero tile gets 1e-4 / 448 and its zeros stay signed zeros; for amax < 1e-4 the
 *   elements stay below 448. Elements by IEEE division.
 * UE8M0 (indexer): that scale rounded up to a power of two: 2^ceil(log2(max(amax, 1e-4) / 448)),
 *   at least 2^-22. Elements by multiplication with the exact reciprocal.
 *
 * The power-of-two rules are computed without a division. For a normal amax = M x 2^e, 1 <= M < 2:
 * amax / 448 = (M / 1.75) x 2^(e-8) with M / 1.75 in (0.5, 8/7), so the smallest power of two
 * >= amax / 448 is 2^(e-8) when M <= 1.75 and 2^(e-7) otherwise. The fp32 division cannot change
 * that: rounding amax / 448 onto a power of two 2^j would need amax = 1.75 x 2^(j+8) x (1 + d)
 * with 0 < |d| < 2^-24, and no fp32 mantissa lies that close to 1.75. ceil is monotone, so the
 * 1e-4 floor moves through it: max(ceil_pow2(v), ceil_pow2(floor)), with ceil_pow2(1e-4) = 2^-13
 * and ceil_pow2(fp32(1e-4 / 448)) = 2^-22. A zero or subnormal amax lies below both floors.
 */
#define MLA_KV_SCALE_FLOOR 1e-4f
#define MLA_KV_POW2_FLOOR_EXPONENT (-13) /* ceil_pow2(1e-4) */
#define MLA_KV_UE8M0_FLOOR_EXPONENT (-22) /* ceil_pow2(fp32(1e-4 / 448)) */

/* 2^max(ceil(log2(amax / 448)), floor_exponent) as fp32, for finite amax >= 0. */
MLA_KV_HD float mla_kv_pow2_scale_with_floor(float amax, int floor_exponent) {
  const uint32_t a = mla_kv_f32_bits(amax);
  const int32_t biased = (int32_t)(a >> 23) - 8 + ((a & 0x7fffffu) > 0x600000u ? 1 : 0);
  const int32_t floor_biased = floor_exponent + 127;
  return mla_kv_f32_from_bits((uint32_t)(biased > floor_biased ? biased : floor_biased) << 23);
}

MLA_KV_HD float mla_kv_scale_pow2(float amax) { return mla_kv_pow2_scale_with_floor(amax, MLA_KV_POW2_FLOOR_EXPONENT); }
MLA_KV_HD float mla_kv_scale_ds_mla_amax(float amax) { return mla_kv_div_rn(amax, MLA_KV_E4M3_MAX); }
MLA_KV_HD float mla_kv_scale_indexer_amax(float amax) {
  return mla_kv_div_rn(amax > MLA_KV_SCALE_FLOOR ? amax : MLA_KV_SCALE_FLOOR, MLA_KV_E4M3_MAX);
}
MLA_KV_HD float mla_kv_scale_indexer_ue8m0(float amax) {
  return mla_kv_pow2_scale_with_floor(amax, MLA_KV_UE8M0_FLOOR_EXPONENT);
}

/* What an element is divided by: the scale, or 1 for ds_mla's AMAX scale 0 (an all-zero tile). */
MLA_KV_HD float mla_kv_divisor_of_scale(float scale) { return scale == 0.0f ? 1.0f : scale; }

/* 1 / s for a normal power of two s in [2^-126, 2^126]: exact, from the exponent field. */
MLA_KV_HD float mla_kv_pow2_reciprocal(float s) { return mla_kv_f32_from_bits(0x7f000000u - mla_kv_f32_bits(s)); }

/* The e8m0 byte (exponent biased by 127) of a normal power of two: its fp32 exponent field. */
MLA_KV_HD uint32_t mla_kv_e8m0_of_pow2(float s) { return (mla_kv_f32_bits(s) >> 23) & 0xffu; }

#endif /* MLA_KV_FP8_RULES_H_ */
