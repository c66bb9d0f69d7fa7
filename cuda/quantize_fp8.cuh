// quantize_fp8.cuh — quantize-on-write: bf16 or fp16 rows go into an fp8 cache in the write itself.
//
// Engines otherwise run a cast (or per-tile quantize) kernel into a temporary buffer and then the
// scatter: two more passes over HBM and a launch per layer. Here each warp loads its rows' bf16/fp16
// elements into registers, converts them there, and stores fp8 bytes straight into the cache slot,
// so HBM sees one read of the sources and one write of the (smaller) fp8 row.
//
// Two cache layouts (FP8 "formats"):
//
//   flat     [nope x fp8 | rope x fp8]: every element stored = sat(rn(x / scale)), one per-tensor
//            scale given by the caller; e4m3 (OCP E4M3FN) or e5m2.
//
//   ds_mla   the DeepSeek sparse-MLA layout, 656 bytes a row:
//            [512 x e4m3 nope | 4 x fp32 tile scales | 64 x bf16 rope]. Tile t covers nope elements
//            [128t, 128t + 128); its scale is amax_t / 448, amax_t being the largest |x| over the
//            tile's finite elements, and its elements are stored as sat(rn(x / scale_t)), read back
//            as e4m3 * scale_t. The rope part stays 16-bit (bf16 copied, fp16 rounded to bf16).
//
// The conversion rule, on both paths and every arch (bench/NOTES.md and the README state it too):
//   - x / scale is one IEEE fp32 division (round to nearest even), then rounded to the fp8 format
//     (round to nearest, ties to even), subnormals included; -0 and negatives that round to zero
//     keep their sign (0x80).
//   - beyond the largest finite value (448 e4m3, 57344 e5m2), and +-inf, saturate to it.
//   - NaN stays NaN with its sign: 0x7F or 0xFF.
//   - ds_mla: NaN and +-inf do not set a tile's scale; a tile with no finite non-zero element has
//     amax 0, stores scale 0, and its elements are converted as if the scale were 1 (so zeros stay
//     zeros, inf saturates to +-448, NaN stays NaN), which decodes to 0 * x = 0 where finite.
//
// Paths: the vector path stores each lane's converted bytes with plain stores; the TMA path stages
// the converted row in shared memory and hands it to the bulk copy engine exactly as
// tma_store.cuh does for copied rows (same fence and bulk-group discipline).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common.cuh"
#include "tma_store.cuh"

namespace mla_kv {

enum class Fp8Format { kFlatE4m3, kFlatE5m2, kDsMla };

// Everything a quantizing write kernel needs, by value. Strides are in bytes, sizes in elements.
struct QuantizeParams {
  uint8_t* cache;            // [capacity, cache_row_stride]
  const void* loc;           // [n] int32 or int64
  const uint8_t* nope;       // [n, nope_row_stride] bf16 or fp16
  const uint8_t* rope;       // [n, rope_row_stride] bf16 or fp16
  int64_t capacity;
  int64_t cache_row_stride;
  int64_t nope_row_stride;
  int64_t rope_row_stride;
  int64_t nope_elems;        // flat: multiple of 16 up to 1024; ds_mla: 512
  int64_t rope_elems;        // flat: multiple of 2 up to 128; ds_mla: 64
  int64_t n;
  int64_t reserved_slot;     // -1 when none
  float scale;               // flat: the per-tensor scale (finite, > 0); ds_mla: unused
  float reciprocal;          // 1 / scale, exact when scale_is_power_of_two
  int32_t scale_is_power_of_two;
  int32_t loc_is_64;         // 1 for int64 loc, 0 for int32 (a runtime choice: one load a row)
  int32_t sources_vec16;     // 1 when source addresses and strides allow 16-byte loads
  int32_t cache_vec;         // 1 when the cache address and row stride are multiples of 16
  OutOfRangeWord* errors;    // the error slot of the write's stream (or of the graph it is captured into)
  int64_t page_size;         // tokens a page of the paged formats; 0 for row formats
  int32_t scale_rule;        // MLA_KV_SCALE_* of the tile-scaled formats, DEFAULT resolved by the host
};

// The ds_mla row, in bytes.
constexpr int kDsMlaNopeElems = 512;
constexpr int kDsMlaRopeElems = 64;
constexpr int kDsMlaTileElems = 128;
constexpr int kDsMlaScalesOffset = kDsMlaNopeElems;                   // 512
constexpr int kDsMlaRopeOffset = kDsMlaScalesOffset + 4 * 4;          // 528
constexpr int kDsMlaRowBytes = kDsMlaRopeOffset + 2 * kDsMlaRopeElems;  // 656
constexpr float kE4m3Max = 448.0f;

// A flat row's parts: nope in 16-element chunks, at most 2 a lane (1024 elements), rope in
// 2-element pairs, at most 2 a lane (128 elements). One pass per row keeps every load of a warp's
// rows in flight before the first store. MLA rows are 512 + 64: one chunk and one pair a lane.
constexpr int kFlatNopeChunksPerLane = 2;
constexpr int kFlatRopePairsPerLane = 2;
constexpr int64_t kFlatMaxNopeElems = 32 * kFlatNopeChunksPerLane * 16;
constexpr int64_t kFlatMaxRopeElems = 32 * kFlatRopePairsPerLane * 2;

// ---- element conversions ----------------------------------------------------------------------

struct Bf16Source {};
struct Fp16Source {};

template <typename Src> __device__ __forceinline__ float to_f32(uint32_t bits);
template <> __device__ __forceinline__ float to_f32<Bf16Source>(uint32_t bits) { return __uint_as_float(bits << 16); }
template <> __device__ __forceinline__ float to_f32<Fp16Source>(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

// NaN is decided on the source bits: arithmetic on a NaN does not keep its sign on the GPU.
template <typename Src> __device__ __forceinline__ bool is_nan_bits(uint32_t bits);
template <> __device__ __forceinline__ bool is_nan_bits<Bf16Source>(uint32_t bits) { return (bits & 0x7fffu) > 0x7f80u; }
template <> __device__ __forceinline__ bool is_nan_bits<Fp16Source>(uint32_t bits) { return (bits & 0x7fffu) > 0x7c00u; }

template <Fp8Format F> struct Fp8Of;
template <> struct Fp8Of<Fp8Format::kFlatE4m3> { static constexpr __nv_fp8_interpretation_t kind = __NV_E4M3; };
template <> struct Fp8Of<Fp8Format::kFlatE5m2> { static constexpr __nv_fp8_interpretation_t kind = __NV_E5M2; };
template <> struct Fp8Of<Fp8Format::kDsMla> { static constexpr __nv_fp8_interpretation_t kind = __NV_E4M3; };

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

// How a quotient is formed: an IEEE division by the scale, or, when the scale is a power of two
// (the host checks), a multiplication by its exact reciprocal, which gives the same fp32 value
// (both are the exact quotient rounded once) for a fraction of the instructions.
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

// The largest finite |x| of 16 sources, as a tree: four dependent steps instead of sixteen.
template <typename Src>
__device__ __forceinline__ float finite_amax16(const uint4 lo, const uint4 hi) {
  const uint32_t words[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
  float m[8];
#pragma unroll
  for (int w = 0; w < 8; ++w) m[w] = fmaxf(finite_abs<Src>(words[w] & 0xffffu), finite_abs<Src>(words[w] >> 16));
#pragma unroll
  for (int width = 4; width >= 1; width >>= 1) {
#pragma unroll
    for (int w = 0; w < width; ++w) m[w] = fmaxf(m[w], m[w + width]);
  }
  return m[0];
}

// Rope elements of the ds_mla row are bf16: bf16 sources are copied bit for bit, fp16 ones are
// rounded to bf16 (to nearest even; NaN becomes the quiet NaN 0x7fc0 with its sign).
template <typename Src> __device__ __forceinline__ uint32_t to_bf16_pair(uint32_t word);
template <> __device__ __forceinline__ uint32_t to_bf16_pair<Bf16Source>(uint32_t word) { return word; }
template <> __device__ __forceinline__ uint32_t to_bf16_pair<Fp16Source>(uint32_t word) {
  uint32_t out = 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t bits = (word >> (16 * h)) & 0xffffu;
    const uint32_t u = __float_as_uint(to_f32<Fp16Source>(bits));
    const uint32_t bf = is_nan_bits<Fp16Source>(bits) ? (0x7fc0u | (bits & 0x8000u)) : ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    out |= bf << (16 * h);
  }
  return out;
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

__device__ __forceinline__ void store16(uint8_t* dst, uint4 v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint4*>(dst) = v;
  } else {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    store_bytes(dst, w, 4);
  }
}

// ---- one row of each format ---------------------------------------------------------------------
// A Codec loads a row into registers (load, independent of loc, so loads of several rows and the
// loc load overlap) and later converts and stores it to a destination row (emit), which is either
// the cache slot (vector path) or a shared-memory stage (TMA path).

template <typename Src, Fp8Format F>
struct FlatCodec {
  // The row splits evenly over the warp when the parts are multiples of 512 and 64 elements, as
  // MLA's are: lane l owns nope chunks l, l + 32 (16 elements each) and rope pairs l, l + 32, ...
  // (2 elements each). A 512 + 64 row is then one 32-byte nope load, one 4-byte rope load, one
  // 16-byte store and one 2-byte store per lane, every lane busy.
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

template <typename Src>
struct DsMlaCodec {
  // Lane l holds nope elements [16l, 16l + 16) (tile l / 8, so a tile is 8 lanes) and, for
  // l in 1..8, rope elements [8(l - 1), 8l). The row's last 144 bytes (scales + rope) are nine
  // 16-byte pieces: lane 0 stores the scales, lanes 1..8 the rope.
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
    float amax = finite_amax16<Src>(row.nope_lo, row.nope_hi);
    // The 8 lanes of a tile are 8 consecutive lanes, aligned to 8: three butterfly steps.
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 4));
    const float scale = __fdiv_rn(amax, kE4m3Max);
    const float divisor = scale == 0.0f ? 1.0f : scale;
    const uint2 lo = quantize8<Src, Fp8Format::kDsMla, Divide::kByScale>(row.nope_lo, divisor);
    const uint2 hi = quantize8<Src, Fp8Format::kDsMla, Divide::kByScale>(row.nope_hi, divisor);
    // Every lane takes part in the shuffles; lane 0 then owns the four scales.
    const uint32_t s0 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 0));
    const uint32_t s1 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 8));
    const uint32_t s2 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 16));
    const uint32_t s3 = __float_as_uint(__shfl_sync(0xffffffffu, scale, 24));
    store16(dst + lane * 16, make_uint4(lo.x, lo.y, hi.x, hi.y), aligned);
    if (lane == 0) {
      store16(dst + kDsMlaScalesOffset, make_uint4(s0, s1, s2, s3), aligned);
    } else if (lane <= 8) {
      const uint4 r = row.rope;
      store16(dst + kDsMlaRopeOffset + (lane - 1) * 16,
              make_uint4(to_bf16_pair<Src>(r.x), to_bf16_pair<Src>(r.y), to_bf16_pair<Src>(r.z), to_bf16_pair<Src>(r.w)),
              aligned);
    }
  }
};

// ---- kernels --------------------------------------------------------------------------------------

// loc is int32 or int64 by a runtime flag rather than a template: one load a row does not need its
// own copy of these (large) kernels.
__device__ __forceinline__ int64_t load_any_loc(const QuantizeParams& p, int64_t i) {
  return p.loc_is_64 ? load_loc<int64_t>(p.loc, i) : load_loc<int32_t>(p.loc, i);
}

/*!
 * \brief Quantizing write, vector path: ROWS consecutive rows a warp, all their loads issued
 *        before the first conversion, converted bytes stored straight into the cache.
 */
template <typename Codec, int ROWS>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) QuantizeVectorKernel(const QuantizeParams p) {
  const int lane = threadIdx.x & 31;
  const int warps_per_block = blockDim.x >> 5;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * warps_per_block * ROWS;
  const bool aligned = p.cache_vec != 0;

  wait_for_previous_grid();
  for (int64_t first = warp_id * ROWS; first < p.n; first += warp_stride) {
    int64_t slot[ROWS];
    typename Codec::Row row[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      slot[r] = first + r < p.n ? load_any_loc(p, first + r) : -1;
      if (first + r < p.n) Codec::load(p, first + r, lane, row[r]);
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      slot[r] = checked_slot(p.errors, p.capacity, p.reserved_slot, slot[r], first + r, lane);
      // Warp-uniform (every lane read the same loc), so the emit's shuffles see the whole warp.
      if (slot[r] >= 0) Codec::emit(p, row[r], lane, p.cache + slot[r] * p.cache_row_stride, aligned);
    }
  }
  allow_next_grid_to_launch();
}

/*!
 * \brief Quantizing write, TMA path (sm_90+): each converted row is staged in one of the warp's
 *        two shared-memory buffers and written by one cp.async.bulk, as in tma_store.cuh.
 * Requires (checked on the host): the cache address and row stride multiples of 16, the row size
 * a multiple of 16, and TmaSharedBytes(warps, row bytes) of dynamic shared memory.
 */
template <typename Codec, int ROWS>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) QuantizeTmaKernel(const QuantizeParams p) {
#ifdef MLA_KV_HAS_BULK_COPY
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x & 31;
  const int warp_in_block = threadIdx.x >> 5;
  const int warps_per_block = blockDim.x >> 5;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * warps_per_block + warp_in_block;
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * warps_per_block * ROWS;
  const int64_t row_bytes = Codec::RowBytes(p.nope_elems, p.rope_elems);
  const int64_t stage_bytes = TmaStageBytes(row_bytes);
  uint8_t* my_stages = smem + static_cast<int64_t>(warp_in_block) * kTmaStages * stage_bytes;

  int stage = 0;
  wait_for_previous_grid();
  for (int64_t first = warp_id * ROWS; first < p.n; first += warp_stride) {
    int64_t slot[ROWS];
    typename Codec::Row row[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      slot[r] = first + r < p.n ? load_any_loc(p, first + r) : -1;
      if (first + r < p.n) Codec::load(p, first + r, lane, row[r]);
    }
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
    case Fp8Format::kDsMla: return LaunchQuantizeRows<DsMlaCodec<Src>>(p, tma, warps, rows, pdl, stream);
  }
  return cudaErrorInvalidValue;
}

/*!
 * \brief Launches a quantizing write. Arguments, alignment, arch and shared-memory limit were
 *        validated by the caller (capi.cu).
 * \param fp16_sources  false for bf16 sources, true for fp16
 */
inline cudaError_t SetKvBufferQuantized(const QuantizeParams& p, Fp8Format format, bool fp16_sources, bool tma, int warps,
                                        int rows, bool pdl, cudaStream_t stream) {
  return fp16_sources ? LaunchQuantizeFormat<Fp16Source>(p, format, tma, warps, rows, pdl, stream)
                      : LaunchQuantizeFormat<Bf16Source>(p, format, tma, warps, rows, pdl, stream);
}

/*! \brief Bytes of one cache row of `format` (flat: one per element; ds_mla: 656). */
inline int64_t QuantizedRowBytes(Fp8Format format, int64_t nope_elems, int64_t rope_elems) {
  return format == Fp8Format::kDsMla ? kDsMlaRowBytes : nope_elems + rope_elems;
}

}  // namespace mla_kv
