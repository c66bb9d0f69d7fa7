// quantize_fp8.cuh — quantize-on-write: bf16 or fp16 rows go into an fp8 cache in the write itself.
//
// Engines otherwise run a cast (or per-tile quantize) kernel into a temporary buffer and then the
// scatter: two more passes over HBM and a launch per layer. Here each warp loads its rows' bf16/fp16
// elements into registers, converts them there, and stores fp8 bytes straight into the cache slot,
// so HBM sees one read of the sources and one write of the (smaller) fp8 row.
//
// Formats (the byte layouts, scale rules and edge cases are defined once, in fp8_rules.h):
//
//   flat      [nope x fp8 | rope x fp8]: every element stored = sat(rn(x / scale)), one per-tensor
//             scale given by the caller; e4m3 (OCP E4M3FN) or e5m2. Row format.
//   ds_mla    DeepSeek V3.2 sparse MLA, 656 bytes a row: [512 x e4m3 | 4 x fp32 tile scales |
//             64 x bf16 rope], tiles of 128; scale rule POW2 (default) or AMAX. Row format.
//   ds_v4     DeepSeek V4, paged: token rows [448 x e4m3 | 64 x bf16] (576 B) at the front of the
//             page, then a scale word a token [7 x e8m0 | pad] (8 B); tiles of 64; rule POW2.
//   indexer   the sparse-attention indexer's K, paged: 128 e4m3 a token at the front of the page,
//             then an fp32 scale a token; rule AMAX (default) or UE8M0.
//
// The conversion, on every path and arch (fp8_rules.h has the full list of edge cases):
//   - x / scale is one IEEE fp32 division (round to nearest even); a power-of-two scale is a
//     multiplication by its exact reciprocal, which gives the same fp32 value. Then round to the
//     fp8 format (nearest, ties to even), subnormals included; -0 and negatives that round to
//     zero keep their sign (0x80).
//   - beyond the largest finite value (448 e4m3, 57344 e5m2), and +-inf, saturate to it.
//   - NaN stays NaN with its sign: 0x7F or 0xFF.
//   - tile amax over the finite elements only (NaN and +-inf do not count).
//   - all-zero and tiny-amax tiles: ds_mla/ds_v4 POW2 floor the scale at 2^-13 (amax < 0.0448);
//     ds_mla AMAX stores 0 for an all-zero tile and converts it as if the scale were 1; the
//     indexer floors amax at 1e-4 (AMAX: scale 1e-4 / 448; UE8M0: 2^-22). Zeros keep their
//     sign, inf saturates, NaN stays NaN whatever the tile's scale.
// Elements go through cvt.rn.satfinite (two at a time): the GPU suite compares the kernels' bytes
// with the host reference, which the CPU tests compare with fp8_rules.h's software encoders. Tile
// scales and the rope conversion are fp8_rules.h's own functions, so host and device share them.
//
// Designs (all: loc and the row's loads issued together, ROWS rows a warp in flight, 16-byte
// loads where the sources allow, tile maxima by xor-shuffles within aligned lane groups, stores
// only of bytes the format defines):
//   flat      lane l owns 16-element nope chunks l, l+32 and rope pairs l, l+32: 512 + 64 is one
//             32-byte load, one 16-byte store and one pair a lane, every lane busy.
//   ds_mla    lane l owns nope elements [16l, 16l+16) (a tile is 8 lanes: 3 shuffles); lanes 1-8
//             also carry the rope (8 elements each); lane 0 stores the four scales as 16 bytes.
//   ds_v4     a warp a token. Lanes 0-27 own nope elements [16l, 16l+16) (a 64-element tile is 4
//             lanes: 2 shuffles), lanes 28-31 own 16 rope elements each, so every lane loads 32
//             bytes; nope lanes store 16 bytes, rope lanes 32. The first lane of each tile stores
//             its scale's e8m0 byte: 7 one-byte stores of one instruction, into one 8-byte word
//             whose pad byte no lane touches.
//   indexer   two tokens a warp, a half-warp each (a 132-byte token would leave a whole warp
//             three-quarters idle): lane h of a half owns elements [8h, 8h+8) — one 16-byte load,
//             one 8-byte store — the tile is the half (4 shuffles, which never cross halves), and
//             lane 0 of each half stores the fp32 scale.
//   Paged formats locate slot s at page s / page_size, token s % page_size: a shift and a mask
//   for a power-of-two page size, a 32-bit division when both fit, else a 64-bit one (all
//   warp-uniform choices made once a kernel).
//
// Paths: the vector path stores each lane's converted bytes with plain stores; the TMA path (row
// formats only) stages the converted row in shared memory and hands it to the bulk copy engine
// exactly as tma_store.cuh does for copied rows (same fence and bulk-group discipline). A paged
// token's bytes lie in two places of its page, and the indexer's are 132 bytes, so a bulk copy a
// token would not pay: paged formats run on the vector path only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common.cuh"
#include "fp8_rules.h"
#include "tma_store.cuh"

namespace mla_kv {

enum class Fp8Format { kFlatE4m3, kFlatE5m2, kDsMla, kDsV4, kIndexer };

// Everything a quantizing write kernel needs, by value. Strides are in bytes, sizes in elements.
struct QuantizeParams {
  uint8_t* cache;            // row formats: [capacity, cache_row_stride]; paged: [capacity / page_size, cache_row_stride]
  const void* loc;           // [n] int32 or int64
  const uint8_t* nope;       // [n, nope_row_stride] bf16 or fp16
  const uint8_t* rope;       // [n, rope_row_stride] bf16 or fp16; NULL when rope_elems is 0
  int64_t capacity;          // slots (for paged formats: pages x page_size)
  int64_t cache_row_stride;  // bytes between rows (row formats) or pages (paged formats)
  int64_t nope_row_stride;
  int64_t rope_row_stride;
  int64_t nope_elems;        // flat: multiple of 16; ds_mla: 512; ds_v4: 448; indexer: 128
  int64_t rope_elems;        // flat: multiple of 2; ds_mla and ds_v4: 64; indexer: 0
  int64_t n;
  int64_t reserved_slot;     // -1 when none
  float scale;               // flat: the per-tensor scale (finite, > 0); tile-scaled formats: unused
  float reciprocal;          // 1 / scale, exact when scale_is_power_of_two
  int32_t scale_is_power_of_two;
  int32_t loc_is_64;         // 1 for int64 loc, 0 for int32 (a runtime choice: one load a row)
  int32_t sources_vec16;     // 1 when source addresses and strides allow 16-byte loads
  int32_t cache_vec;         // 1 when the cache address and row stride are multiples of 16
  OutOfRangeWord* errors;    // the error slot of the write's stream (or of the graph it is captured into)
  int64_t page_size;         // paged formats: tokens a page (>= 1); row formats: 0
  int32_t scale_rule;        // MLA_KV_SCALE_* resolved (never DEFAULT); flat formats: DEFAULT
};

// The ds_mla row, from fp8_rules.h.
constexpr int kDsMlaNopeElems = MLA_KV_DS_MLA_NOPE_ELEMS;
constexpr int kDsMlaRopeElems = MLA_KV_DS_MLA_ROPE_ELEMS;
constexpr int kDsMlaScalesOffset = MLA_KV_DS_MLA_SCALES_OFFSET;
constexpr int kDsMlaRopeOffset = MLA_KV_DS_MLA_ROPE_OFFSET;
constexpr int kDsMlaRowBytes = MLA_KV_DS_MLA_ROW_BYTES;
static_assert(MLA_KV_DS_MLA_TILE_ELEMS == 8 * 16, "a ds_mla tile is 8 lanes of 16 elements");
static_assert(MLA_KV_DS_V4_TILE_ELEMS == 4 * 16 && MLA_KV_DS_V4_NOPE_ELEMS == 28 * 16 && MLA_KV_DS_V4_ROPE_ELEMS == 4 * 16,
              "a ds_v4 token is 28 nope lanes (tiles of 4) and 4 rope lanes of 16 elements");
static_assert(MLA_KV_INDEXER_ELEMS == 16 * 8, "an indexer token is 16 lanes of 8 elements");

// A flat row's parts: nope in 16-element chunks, at most 2 a lane (1024 elements), rope in
// 2-element pairs, at most 2 a lane (128 elements). One pass per row keeps every load of a warp's
// rows in flight before the first store. MLA rows are 512 + 64: one chunk and one pair a lane.
constexpr int kFlatNopeChunksPerLane = 2;
constexpr int kFlatRopePairsPerLane = 2;
constexpr int64_t kFlatMaxNopeElems = 32 * kFlatNopeChunksPerLane * 16;
constexpr int64_t kFlatMaxRopeElems = 32 * kFlatRopePairsPerLane * 2;

// ---- element conversions ----------------------------------------------------------------------

struct Bf16Source { static constexpr int kFp16 = 0; };
struct Fp16Source { static constexpr int kFp16 = 1; };

template <typename Src> __device__ __forceinline__ float to_f32(uint32_t bits);
template <> __device__ __forceinline__ float to_f32<Bf16Source>(uint32_t bits) { return __uint_as_float(bits << 16); }
template <> __device__ __forceinline__ float to_f32<Fp16Source>(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

// NaN is decided on the source bits: arithmetic on a NaN does not keep its sign on the GPU.
template <typename Src> __device__ __forceinline__ bool is_nan_bits(uint32_t bits) {
  return mla_kv_source_is_nan(bits, Src::kFp16) != 0;
}

template <Fp8Format F> struct Fp8Of { static constexpr __nv_fp8_interpretation_t kind = __NV_E4M3; };
template <> struct Fp8Of<Fp8Format::kFlatE5m2> { static constexpr __nv_fp8_interpretation_t kind = __NV_E5M2; };

// Which halves of a word of two source elements are inf or NaN (exponent all ones), as the bits
// 0x8000 and 0x80000000: three integer operations for two elements, so the common case (no
// specials) pays almost nothing and the exact NaN fix-up below runs only when one is there.
template <typename Src> __device__ __forceinline__ uint32_t special_halves(uint32_t word);
template <> __device__ __forceinline__ uint32_t special_halves<Bf16Source>(uint32_t word) {
  return ((word & 0x7fff7fffu) + 0x00800080u) & 0x80008000u;
}
template <> __device__ __forceinline__ uint32_t special_halves<Fp16Source>(uint32_t word) {
  return ((word & 0x7fff7fffu) + 0x04000400u) & 0x80008000u;
}

// How a quotient is formed: an IEEE division by the scale, or, when the scale is a power of two,
// a multiplication by its exact reciprocal, which gives the same fp32 value (both are the exact
// quotient rounded once) for a fraction of the instructions.
enum class Divide { kByScale, kByPowerOfTwo };

template <Divide D>
__device__ __forceinline__ float quotient(float x, float scale_or_reciprocal) {
  if constexpr (D == Divide::kByPowerOfTwo) {
    return x * scale_or_reciprocal;
  } else {
    return __fdiv_rn(x, scale_or_reciprocal);
  }
}

// Two source elements (the low and high half of `word`) to two fp8 bytes, low element first.
// cvt.rn.satfinite rounds to nearest even and saturates out-of-range values and +-inf to the
// largest finite value. NaN is then set from the source bits: the conversion's NaN does not keep
// the sign, and its e5m2 NaN differs between the instruction and the pre-sm_89 emulation.
template <typename Src, Fp8Format F, Divide D>
__device__ __forceinline__ uint32_t quantize_pair(uint32_t word, float scale) {
  const float a = quotient<D>(to_f32<Src>(word & 0xffffu), scale);
  const float b = quotient<D>(to_f32<Src>(word >> 16), scale);
  uint32_t pair = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, Fp8Of<F>::kind);
  if (special_halves<Src>(word) != 0u) {
    const uint32_t lo = word & 0xffffu, hi = word >> 16;
    if (is_nan_bits<Src>(lo)) pair = (pair & 0xff00u) | 0x7fu | ((lo >> 8) & 0x80u);
    if (is_nan_bits<Src>(hi)) pair = (pair & 0x00ffu) | ((0x7fu | ((hi >> 8) & 0x80u)) << 8);
  }
  return pair;
}

// Eight source elements (16 bytes) to eight fp8 bytes.
template <typename Src, Fp8Format F, Divide D>
__device__ __forceinline__ uint2 quantize8(const uint4 raw, float scale) {
  return make_uint2(quantize_pair<Src, F, D>(raw.x, scale) | (quantize_pair<Src, F, D>(raw.y, scale) << 16),
                    quantize_pair<Src, F, D>(raw.z, scale) | (quantize_pair<Src, F, D>(raw.w, scale) << 16));
}

// |x| of each finite element of 8 sources, 0 for NaN and +-inf (NaN fails the comparison), so one
// bad element does not flatten the rest of its tile to zero.
template <typename Src>
__device__ __forceinline__ float finite_abs(uint32_t bits) {
  const float a = fabsf(to_f32<Src>(bits));
  return a < INFINITY ? a : 0.0f;
}

// The largest finite |x| of the 2 x WORDS sources in `words`, as a tree: log2 steps, not a chain.
template <typename Src, int WORDS>
__device__ __forceinline__ float finite_amax(const uint32_t (&words)[WORDS]) {
  float m[WORDS];
#pragma unroll
  for (int w = 0; w < WORDS; ++w) m[w] = fmaxf(finite_abs<Src>(words[w] & 0xffffu), finite_abs<Src>(words[w] >> 16));
#pragma unroll
  for (int width = WORDS / 2; width >= 1; width >>= 1) {
#pragma unroll
    for (int w = 0; w < width; ++w) m[w] = fmaxf(m[w], m[w + width]);
  }
  return m[0];
}

template <typename Src>
__device__ __forceinline__ float finite_amax16(const uint4 lo, const uint4 hi) {
  const uint32_t words[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  return finite_amax<Src, 8>(words);
}

template <typename Src>
__device__ __forceinline__ float finite_amax8(const uint4 v) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
  return finite_amax<Src, 4>(words);
}

// The maximum over each aligned group of GROUP lanes (a power of two), in every lane of it. The
// xor steps stay inside the group, so groups of other tiles (or tokens) never mix. Every lane of
// the warp must be here.
template <int GROUP>
__device__ __forceinline__ float group_max(float v) {
#pragma unroll
  for (int offset = 1; offset < GROUP; offset <<= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// A tile's scale by its rule, and what its elements are multiplied or divided by.
template <int Rule> struct TileScale;
// ds_mla and ds_v4 POW2: a power of two, applied by multiplication with its exact reciprocal.
template <> struct TileScale<MLA_KV_SCALE_POW2> {
  static constexpr Divide kDivide = Divide::kByPowerOfTwo;
  static __device__ __forceinline__ float scale(float amax) { return mla_kv_scale_pow2(amax); }
  static __device__ __forceinline__ float operand(float scale) { return mla_kv_pow2_reciprocal(scale); }
};
// ds_mla AMAX: amax / 448, and 1 in place of a zero scale.
template <> struct TileScale<MLA_KV_SCALE_AMAX> {
  static constexpr Divide kDivide = Divide::kByScale;
  static __device__ __forceinline__ float scale(float amax) { return mla_kv_scale_ds_mla_amax(amax); }
  static __device__ __forceinline__ float operand(float scale) { return mla_kv_divisor_of_scale(scale); }
};
// The indexer's rules are their own: its AMAX has the 1e-4 floor, so its scale is never 0.
template <int Rule> struct IndexerScale;
template <> struct IndexerScale<MLA_KV_SCALE_AMAX> {
  static constexpr Divide kDivide = Divide::kByScale;
  static __device__ __forceinline__ float scale(float amax) { return mla_kv_scale_indexer_amax(amax); }
  static __device__ __forceinline__ float operand(float scale) { return scale; }
};
template <> struct IndexerScale<MLA_KV_SCALE_UE8M0> {
  static constexpr Divide kDivide = Divide::kByPowerOfTwo;
  static __device__ __forceinline__ float scale(float amax) { return mla_kv_scale_indexer_ue8m0(amax); }
  static __device__ __forceinline__ float operand(float scale) { return mla_kv_pow2_reciprocal(scale); }
};

// Rope elements of ds_mla and ds_v4 are bf16 (fp8_rules.h: bf16 kept, fp16 rounded).
template <typename Src>
__device__ __forceinline__ uint32_t to_bf16_pair(uint32_t word) {
  if constexpr (Src::kFp16 == 0) {
    return word;
  } else {
    return mla_kv_rope_to_bf16(word & 0xffffu, 1) | (mla_kv_rope_to_bf16(word >> 16, 1) << 16);
  }
}

template <typename Src>
__device__ __forceinline__ uint4 to_bf16x8(const uint4 r) {
  return make_uint4(to_bf16_pair<Src>(r.x), to_bf16_pair<Src>(r.y), to_bf16_pair<Src>(r.z), to_bf16_pair<Src>(r.w));
}

// ---- loads and stores that follow the alignment the host found ----------------------------------

// Eight 16-bit source elements. Sources are always 2-byte aligned (their dtype); a strided view
// may not allow one 16-byte load, and then eight 2-byte loads fetch the same bytes.
__device__ __forceinline__ uint4 load8(const uint8_t* src, bool vec16) {
  if (vec16) return load_streaming(reinterpret_cast<const uint4*>(src));
  const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
  uint32_t w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) w[k] = static_cast<uint32_t>(__ldg(h + 2 * k)) | (static_cast<uint32_t>(__ldg(h + 2 * k + 1)) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// Two 16-bit source elements; 4-byte aligned whenever the sources allow 16-byte loads.
__device__ __forceinline__ uint32_t load_pair(const uint8_t* src, bool vec16) {
  if (vec16) return __ldg(reinterpret_cast<const uint32_t*>(src));
  const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
  return static_cast<uint32_t>(__ldg(h)) | (static_cast<uint32_t>(__ldg(h + 1)) << 16);
}

__device__ __forceinline__ void store2(uint8_t* dst, uint32_t pair, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint16_t*>(dst) = static_cast<uint16_t>(pair);
  } else {
    dst[0] = static_cast<uint8_t>(pair);
    dst[1] = static_cast<uint8_t>(pair >> 8);
  }
}

__device__ __forceinline__ void store_bytes(uint8_t* dst, const uint32_t* words, int count) {
  for (int k = 0; k < count; ++k) {
#pragma unroll
    for (int b = 0; b < 4; ++b) dst[4 * k + b] = static_cast<uint8_t>(words[k] >> (8 * b));
  }
}

// 4, 8 and 16 bytes at a multiple of their size when `aligned` (the cache address and row stride
// are multiples of 16, and every offset the formats store at is a multiple of the store's size).
__device__ __forceinline__ void store4(uint8_t* dst, uint32_t v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint32_t*>(dst) = v;
  } else {
    store_bytes(dst, &v, 1);
  }
}

__device__ __forceinline__ void store8(uint8_t* dst, uint2 v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint2*>(dst) = v;
  } else {
    const uint32_t w[2] = {v.x, v.y};
    store_bytes(dst, w, 2);
  }
}

__device__ __forceinline__ void store16(uint8_t* dst, uint4 v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint4*>(dst) = v;
  } else {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    store_bytes(dst, w, 4);
  }
}

// ---- one row of each row format -----------------------------------------------------------------
// A Codec loads a row into registers (load, independent of loc, so loads of several rows and the
// loc load overlap) and later converts and stores it to a destination row (emit), which is either
// the cache slot (vector path) or a shared-memory stage (TMA path).

template <typename Src, Fp8Format F>
struct FlatCodec {
  // The row splits evenly over the warp when the parts are multiples of 512 and 64 elements, as
  // MLA's are: lane l owns nope chunks l, l + 32 (16 elements each) and rope pairs l, l + 32, ...
  // (2 elements each). A 512 + 64 row is then one 32-byte nope load, one 4-byte rope load, one
  // 16-byte store and one 2-byte store per lane, every lane busy.
  static constexpr bool kPaged = false;
  struct Row {
    uint4 nope[kFlatNopeChunksPerLane][2];
    uint32_t rope[kFlatRopePairsPerLane];
  };
  static __host__ __device__ constexpr int64_t RowBytes(int64_t nope_elems, int64_t rope_elems) { return nope_elems + rope_elems; }

  static __device__ __forceinline__ void load(const QuantizeParams& p, int64_t i, int lane, Row& row) {
    const bool vec16 = p.sources_vec16 != 0;
    const uint8_t* nope = p.nope + i * p.nope_row_stride;
    const uint8_t* rope = p.rope + i * p.rope_row_stride;
#pragma unroll
    for (int k = 0; k < kFlatNopeChunksPerLane; ++k) {
      const int64_t c = lane + 32 * k;
      if (c * 16 < p.nope_elems) {
        row.nope[k][0] = load8(nope + c * 32, vec16);
        row.nope[k][1] = load8(nope + c * 32 + 16, vec16);
      }
    }
#pragma unroll
    for (int k = 0; k < kFlatRopePairsPerLane; ++k) {
      const int64_t c = lane + 32 * k;
      if (c * 2 < p.rope_elems) row.rope[k] = load_pair(rope + c * 4, vec16);
    }
  }

  template <Divide D>
  static __device__ __forceinline__ void emit_as(const QuantizeParams& p, const Row& row, int lane, uint8_t* dst, bool aligned,
                                                 float scale) {
#pragma unroll
    for (int k = 0; k < kFlatNopeChunksPerLane; ++k) {
      const int64_t c = lane + 32 * k;
      if (c * 16 < p.nope_elems) {
        const uint2 lo = quantize8<Src, F, D>(row.nope[k][0], scale);
        const uint2 hi = quantize8<Src, F, D>(row.nope[k][1], scale);
        store16(dst + c * 16, make_uint4(lo.x, lo.y, hi.x, hi.y), aligned);
      }
    }
#pragma unroll
    for (int k = 0; k < kFlatRopePairsPerLane; ++k) {
      const int64_t c = lane + 32 * k;
      if (c * 2 < p.rope_elems) store2(dst + p.nope_elems + c * 2, quantize_pair<Src, F, D>(row.rope[k], scale), aligned);
    }
  }

  static __device__ __forceinline__ void emit(const QuantizeParams& p, const Row& row, int lane, uint8_t* dst, bool aligned) {
    // Warp-uniform: the host decides once per call.
    if (p.scale_is_power_of_two) {
      emit_as<Divide::kByPowerOfTwo>(p, row, lane, dst, aligned, p.reciprocal);
    } else {
      emit_as<Divide::kByScale>(p, row, lane, dst, aligned, p.scale);
    }
  }
};

template <typename Src, int Rule>
struct DsMlaCodec {
  // Lane l holds nope elements [16l, 16l + 16) (tile l / 8, so a tile is 8 lanes) and, for
  // l in 1..8, rope elements [8(l - 1), 8l). The row's last 144 bytes (scales + rope) are nine
  // 16-byte pieces: lane 0 stores the scales, lanes 1..8 the rope.
  static constexpr bool kPaged = false;
  using Scale = TileScale<Rule>;
  struct Row {
    uint4 nope_lo, nope_hi, rope;
  };
  static __host__ __device__ constexpr int64_t RowBytes(int64_t, int64_t) { return kDsMlaRowBytes; }

  static __device__ __forceinline__ void load(const QuantizeParams& p, int64_t i, int lane, Row& row) {
    const bool vec16 = p.sources_vec16 != 0;
    const uint8_t* nope = p.nope + i * p.nope_row_stride + lane * 32;
    row.nope_lo = load8(nope, vec16);
    row.nope_hi = load8(nope + 16, vec16);
    if (lane >= 1 && lane <= 8) row.rope = load8(p.rope + i * p.rope_row_stride + (lane - 1) * 16, vec16);
  }

  static __device__ __forceinline__ void emit(const QuantizeParams&, const Row& row, int lane, uint8_t* dst, bool aligned) {
    // The 8 lanes of a tile are 8 consecutive lanes, aligned to 8: three butterfly steps.
    const float amax = group_max<8>(finite_amax16<Src>(row.nope_lo, row.nope_hi));
    const float scale = Scale::scale(amax);
    const float operand = Scale::operand(scale);
    const uint2 lo = quantize8<Src, Fp8Format::kDsMla, Scale::kDivide>(row.nope_lo, operand);
    const uint2 hi = quantize8<Src, Fp8Format::kDsMla, Scale::kDivide>(row.nope_hi, operand);
    // Every lane takes part in the shuffles; lane 0 then owns the four scales.
    const uint32_t s0 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 0));
    const uint32_t s1 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 8));
    const uint32_t s2 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 16));
    const uint32_t s3 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 24));
    store16(dst + lane * 16, make_uint4(lo.x, lo.y, hi.x, hi.y), aligned);
    if (lane == 0) {
      store16(dst + kDsMlaScalesOffset, make_uint4(s0, s1, s2, s3), aligned);
    } else if (lane <= 8) {
      store16(dst + kDsMlaRopeOffset + (lane - 1) * 16, to_bf16x8<Src>(row.rope), aligned);
    }
  }
};

// ---- one token of each paged format -------------------------------------------------------------
// A paged Codec serves kTokensPerWarp tokens a warp, 32 / kTokensPerWarp lanes each. load is as
// above; emit gets the token's page and its index in the page, and `write` (false for a lane
// whose token is skipped: its shuffles must still run, the warp's other token needs them).

template <typename Src>
struct DsV4Codec {
  static constexpr bool kPaged = true;
  static constexpr int kTokensPerWarp = 1;
  static constexpr int kNopeLanes = MLA_KV_DS_V4_NOPE_ELEMS / 16;  // 28
  struct Row {
    uint4 lo, hi;  // 16 elements: nope [16l, 16l+16) for l < 28, rope [16(l-28), ...) after
  };

  static __device__ __forceinline__ void load(const QuantizeParams& p, int64_t i, int lane, Row& row) {
    const bool vec16 = p.sources_vec16 != 0;
    const uint8_t* src = lane < kNopeLanes ? p.nope + i * p.nope_row_stride + lane * 32
                                           : p.rope + i * p.rope_row_stride + (lane - kNopeLanes) * 32;
    row.lo = load8(src, vec16);
    row.hi = load8(src + 16, vec16);
  }

  static __device__ __forceinline__ void emit(const QuantizeParams& p, const Row& row, int lane, uint8_t* page, int64_t token,
                                              bool, bool aligned) {
    using Scale = TileScale<MLA_KV_SCALE_POW2>;
    // A tile is 4 aligned lanes. The rope lanes 28..31 form a group of their own, whose maximum
    // is computed and not used, rather than making the shuffles divergent.
    const float amax = group_max<4>(finite_amax16<Src>(row.lo, row.hi));
    uint8_t* dst = page + token * MLA_KV_DS_V4_TOKEN_BYTES;
    if (lane < kNopeLanes) {
      const float scale = Scale::scale(amax);
      const float reciprocal = Scale::operand(scale);
      const uint2 lo = quantize8<Src, Fp8Format::kDsV4, Divide::kByPowerOfTwo>(row.lo, reciprocal);
      const uint2 hi = quantize8<Src, Fp8Format::kDsV4, Divide::kByPowerOfTwo>(row.hi, reciprocal);
      store16(dst + lane * 16, make_uint4(lo.x, lo.y, hi.x, hi.y), aligned);
      if ((lane & 3) == 0) {
        uint8_t* word = page + p.page_size * MLA_KV_DS_V4_TOKEN_BYTES + token * MLA_KV_DS_V4_SCALE_BYTES;
        word[lane >> 2] = static_cast<uint8_t>(mla_kv_e8m0_of_pow2(scale));
      }
    } else {
      uint8_t* rope = dst + MLA_KV_DS_V4_NOPE_ELEMS + (lane - kNopeLanes) * 32;
      store16(rope, to_bf16x8<Src>(row.lo), aligned);
      store16(rope + 16, to_bf16x8<Src>(row.hi), aligned);
    }
  }
};

template <typename Src, int Rule>
struct IndexerCodec {
  static constexpr bool kPaged = true;
  static constexpr int kTokensPerWarp = 2;
  using Scale = IndexerScale<Rule>;
  struct Row {
    uint4 k;  // elements [8h, 8h + 8) of the token, h the lane in its half-warp
  };

  static __device__ __forceinline__ void load(const QuantizeParams& p, int64_t i, int lane, Row& row) {
    row.k = load8(p.nope + i * p.nope_row_stride + lane * 16, p.sources_vec16 != 0);
  }

  static __device__ __forceinline__ void emit(const QuantizeParams& p, const Row& row, int lane, uint8_t* page, int64_t token,
                                              bool write, bool aligned) {
    // The whole token is one tile: 16 lanes, four xor steps that stay inside the half-warp.
    const float scale = Scale::scale(group_max<16>(finite_amax8<Src>(row.k)));
    const uint2 q = quantize8<Src, Fp8Format::kIndexer, Scale::kDivide>(row.k, Scale::operand(scale));
    if (!write) return;
    store8(page + token * MLA_KV_INDEXER_ELEMS + lane * 8, q, aligned);
    if (lane == 0) {
      store4(page + p.page_size * MLA_KV_INDEXER_ELEMS + token * MLA_KV_INDEXER_SCALE_BYTES, __float_as_uint(scale),
             aligned);
    }
  }
};

// Slot -> (page, token in page). A power-of-two page size (the common 1, 16, 64) is a shift and a
// mask; otherwise a 32-bit division when both numbers fit (a few instructions against a 64-bit
// division's long software sequence); else the 64-bit one.
__device__ __forceinline__ void page_of(int64_t slot, int64_t page_size, int64_t& page, int64_t& token) {
  if ((page_size & (page_size - 1)) == 0) {
    const int shift = __ffsll(page_size) - 1;
    page = slot >> shift;
    token = slot & (page_size - 1);
  } else if (static_cast<uint64_t>(slot) <= 0xffffffffull && static_cast<uint64_t>(page_size) <= 0xffffffffull) {
    const uint32_t q = static_cast<uint32_t>(slot) / static_cast<uint32_t>(page_size);
    page = q;
    token = slot - static_cast<int64_t>(q) * page_size;
  } else {
    page = slot / page_size;
    token = slot - page * page_size;
  }
}

// ---- kernels --------------------------------------------------------------------------------------

// loc is int32 or int64 by a runtime flag rather than a template: one load a row does not need its
// own copy of these (large) kernels.
__device__ __forceinline__ int64_t load_any_loc(const QuantizeParams& p, int64_t i) {
  return p.loc_is_64 ? load_loc<int64_t>(p.loc, i) : load_loc<int32_t>(p.loc, i);
}

// Where a warp's passes over the rows start and how far apart they are, `per_pass` rows a pass
// (a grid-stride loop in units of warps).
struct WarpPasses {
  int64_t first;
  int64_t stride;
};
__device__ __forceinline__ WarpPasses warp_passes(int64_t per_pass) {
  const int warps_per_block = blockDim.x >> 5;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  return {warp * per_pass, static_cast<int64_t>(gridDim.x) * warps_per_block * per_pass};
}

// Rows i = first + r * step (r < ROWS): their loc and their data loads issued together, before
// anything waits on either (the source address depends only on i). A row past n gets slot -1;
// with ZERO_PAST_END also a zero row, for codecs whose lanes serve several rows and still run
// their shuffles on it (zeroing costs the big flat rows registers, so only those codecs ask).
template <typename Codec, int ROWS, bool ZERO_PAST_END = false>
__device__ __forceinline__ void load_rows(const QuantizeParams& p, int64_t first, int64_t step, int part, int64_t (&slot)[ROWS],
                                          typename Codec::Row (&row)[ROWS]) {
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t i = first + r * step;
    slot[r] = i < p.n ? load_any_loc(p, i) : -1;
    if (i < p.n) {
      Codec::load(p, i, part, row[r]);
    } else if constexpr (ZERO_PAST_END) {
      row[r] = {};
    }
  }
}

/*!
 * \brief Quantizing write, vector path, row formats: ROWS consecutive rows a warp, all their loads
 *        issued before the first conversion, converted bytes stored straight into the cache.
 */
template <typename Codec, int ROWS>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) QuantizeVectorKernel(const QuantizeParams p) {
  const int lane = threadIdx.x & 31;
  const WarpPasses passes = warp_passes(ROWS);
  const bool aligned = p.cache_vec != 0;

  wait_for_previous_grid();
  for (int64_t first = passes.first; first < p.n; first += passes.stride) {
    int64_t slot[ROWS];
    typename Codec::Row row[ROWS];
    load_rows<Codec, ROWS>(p, first, 1, lane, slot, row);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      slot[r] = checked_slot(p.errors, p.capacity, p.reserved_slot, slot[r], first + r, lane);
      // Warp-uniform (every lane read the same loc), so the emit's shuffles see the whole warp.
      if (slot[r] >= 0) Codec::emit(p, row[r], lane, p.cache + slot[r] * p.cache_row_stride, aligned);
    }
  }
  allow_next_grid_to_launch();
}

// The paged kernels ask for one 512-thread block a multiprocessor at least. Without that, ptxas
// caps them at 64 registers on most architectures (sm_75-86 and sm_100+: room for two such
// blocks) and spills at 2 and 4 rows a warp; with it they take what they need, up to 128.
constexpr int kPagedMinBlocksPerSm = 1;

/*!
 * \brief Quantizing write, paged formats (vector path): ROWS groups of kTokensPerWarp tokens a
 *        warp, each token served by 32 / kTokensPerWarp lanes, all loads issued first.
 * With two tokens a warp the halves' slots differ, so a skipped token's lanes still convert (the
 * shuffles need every lane) and only their stores are dropped.
 */
template <typename Codec, int ROWS>
__global__ void __launch_bounds__(kMaxThreadsPerBlock, kPagedMinBlocksPerSm) QuantizePagedKernel(const QuantizeParams p) {
  constexpr int kTokens = Codec::kTokensPerWarp;
  constexpr int kLanes = 32 / kTokens;
  const int lane = threadIdx.x & 31;
  const int part = lane % kLanes;  // the lane within its token
  const int64_t which = lane / kLanes;
  const WarpPasses passes = warp_passes(static_cast<int64_t>(ROWS) * kTokens);
  const bool aligned = p.cache_vec != 0;

  wait_for_previous_grid();
  for (int64_t first = passes.first; first < p.n; first += passes.stride) {
    int64_t slot[ROWS];
    typename Codec::Row row[ROWS];
    load_rows<Codec, ROWS, (kTokens > 1)>(p, first + which, kTokens, part, slot, row);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t i = first + r * kTokens + which;
      // Lane 0 of each token reports it, so a skipped token is counted once.
      slot[r] = checked_slot(p.errors, p.capacity, p.reserved_slot, slot[r], i, part);
      if (kTokens == 1 && slot[r] < 0) continue;  // warp-uniform with one token a warp
      const bool write = slot[r] >= 0;
      int64_t page = 0, token = 0;
      if (write) page_of(slot[r], p.page_size, page, token);
      Codec::emit(p, row[r], part, p.cache + page * p.cache_row_stride, token, write, aligned);
    }
  }
  allow_next_grid_to_launch();
}

/*!
 * \brief Quantizing write, TMA path (sm_90+), row formats: each converted row is staged in one of
 *        the warp's two shared-memory buffers and written by one cp.async.bulk, as in tma_store.cuh.
 * Requires (checked on the host): the cache address and row stride multiples of 16, the row size
 * a multiple of 16, and TmaSharedBytes(warps, row bytes) of dynamic shared memory.
 */
template <typename Codec, int ROWS>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) QuantizeTmaKernel(const QuantizeParams p) {
#ifdef MLA_KV_HAS_BULK_COPY
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x & 31;
  const int warp_in_block = threadIdx.x >> 5;
  const WarpPasses passes = warp_passes(ROWS);
  const int64_t row_bytes = Codec::RowBytes(p.nope_elems, p.rope_elems);
  const int64_t stage_bytes = TmaStageBytes(row_bytes);
  uint8_t* my_stages = smem + static_cast<int64_t>(warp_in_block) * kTmaStages * stage_bytes;

  int stage = 0;
  wait_for_previous_grid();
  for (int64_t first = passes.first; first < p.n; first += passes.stride) {
    int64_t slot[ROWS];
    typename Codec::Row row[ROWS];
    load_rows<Codec, ROWS>(p, first, 1, lane, slot, row);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      slot[r] = checked_slot(p.errors, p.capacity, p.reserved_slot, slot[r], first + r, lane);
      if (slot[r] < 0) continue;  // warp-uniform
      uint8_t* buf = my_stages + stage * stage_bytes;
      // The buffer about to be filled was handed to the engine kTmaStages rows ago.
      if (lane == 0) bulk_wait_read<kTmaStages - 1>();
      __syncwarp();
      Codec::emit(p, row[r], lane, buf, true);
      fence_proxy_async_shared();
      __syncwarp();
      if (lane == 0) bulk_store_row(p.cache + slot[r] * p.cache_row_stride, buf, static_cast<uint32_t>(row_bytes));
      stage = (stage + 1) % kTmaStages;
    }
  }
  if (lane == 0) bulk_wait_all();
  allow_next_grid_to_launch();
#else
  __trap();  // the host never launches this path below sm_90; a launch that did must not pass silently
#endif
}

// ---- launch table ---------------------------------------------------------------------------------

template <typename Codec, int ROWS>
cudaError_t LaunchQuantize(const QuantizeParams& p, bool tma, int warps, bool pdl, cudaStream_t stream) {
  if constexpr (Codec::kPaged) {
    if (tma) return cudaErrorInvalidValue;  // refused by the host checks before this
    const int64_t tokens_per_block = static_cast<int64_t>(warps) * ROWS * Codec::kTokensPerWarp;
    const int64_t blocks = (p.n + tokens_per_block - 1) / tokens_per_block;
    const unsigned grid = static_cast<unsigned>(blocks < 0x7fffffff ? blocks : 0x7fffffff);
    return LaunchWrite(QuantizePagedKernel<Codec, ROWS>, grid, warps * 32, 0, stream, pdl, p);
  } else {
    const int64_t rows_per_block = static_cast<int64_t>(warps) * ROWS;
    const int64_t blocks = (p.n + rows_per_block - 1) / rows_per_block;
    const unsigned grid = static_cast<unsigned>(blocks < 0x7fffffff ? blocks : 0x7fffffff);
    if (!tma) return LaunchWrite(QuantizeVectorKernel<Codec, ROWS>, grid, warps * 32, 0, stream, pdl, p);
    const int64_t shared_bytes = TmaSharedBytes(warps, Codec::RowBytes(p.nope_elems, p.rope_elems));
    if (shared_bytes > 48 * 1024) {
      cudaError_t e = cudaFuncSetAttribute(QuantizeTmaKernel<Codec, ROWS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared_bytes));
      if (e != cudaSuccess) return e;
    }
    return LaunchWrite(QuantizeTmaKernel<Codec, ROWS>, grid, warps * 32, static_cast<size_t>(shared_bytes), stream, pdl, p);
  }
}

template <typename Codec>
cudaError_t LaunchQuantizeRows(const QuantizeParams& p, bool tma, int warps, int rows, bool pdl, cudaStream_t stream) {
  switch (rows) {
    case 1: return LaunchQuantize<Codec, 1>(p, tma, warps, pdl, stream);
    case 2: return LaunchQuantize<Codec, 2>(p, tma, warps, pdl, stream);
    case 4: return LaunchQuantize<Codec, 4>(p, tma, warps, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <typename Src>
cudaError_t LaunchQuantizeFormat(const QuantizeParams& p, Fp8Format format, bool tma, int warps, int rows, bool pdl,
                                 cudaStream_t stream) {
  switch (format) {
    case Fp8Format::kFlatE4m3: return LaunchQuantizeRows<FlatCodec<Src, Fp8Format::kFlatE4m3>>(p, tma, warps, rows, pdl, stream);
    case Fp8Format::kFlatE5m2: return LaunchQuantizeRows<FlatCodec<Src, Fp8Format::kFlatE5m2>>(p, tma, warps, rows, pdl, stream);
    case Fp8Format::kDsMla:
      return p.scale_rule == MLA_KV_SCALE_AMAX
                 ? LaunchQuantizeRows<DsMlaCodec<Src, MLA_KV_SCALE_AMAX>>(p, tma, warps, rows, pdl, stream)
                 : LaunchQuantizeRows<DsMlaCodec<Src, MLA_KV_SCALE_POW2>>(p, tma, warps, rows, pdl, stream);
    case Fp8Format::kDsV4: return LaunchQuantizeRows<DsV4Codec<Src>>(p, tma, warps, rows, pdl, stream);
    case Fp8Format::kIndexer:
      return p.scale_rule == MLA_KV_SCALE_UE8M0
                 ? LaunchQuantizeRows<IndexerCodec<Src, MLA_KV_SCALE_UE8M0>>(p, tma, warps, rows, pdl, stream)
                 : LaunchQuantizeRows<IndexerCodec<Src, MLA_KV_SCALE_AMAX>>(p, tma, warps, rows, pdl, stream);
  }
  return cudaErrorInvalidValue;
}

/*!
 * \brief Launches a quantizing write. Arguments, alignment, arch and shared-memory limit were
 *        validated by the caller (capi.cu), and p.scale_rule resolved.
 * \param fp16_sources  false for bf16 sources, true for fp16
 */
inline cudaError_t SetKvBufferQuantized(const QuantizeParams& p, Fp8Format format, bool fp16_sources, bool tma, int warps,
                                        int rows, bool pdl, cudaStream_t stream) {
  return fp16_sources ? LaunchQuantizeFormat<Fp16Source>(p, format, tma, warps, rows, pdl, stream)
                      : LaunchQuantizeFormat<Bf16Source>(p, format, tma, warps, rows, pdl, stream);
}

}  // namespace mla_kv
