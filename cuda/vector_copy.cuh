// vector_copy.cuh — the register-copy write path, for every arch from sm_75.
//
// A warp owns ROWS consecutive rows. Each lane holds up to K vectors of V bytes per row in
// registers; all loads of all ROWS rows are issued before the first store, so one warp keeps
// ROWS * K independent loads in flight (the scatter's latency is hidden by memory-level
// parallelism, not by occupancy alone). V is the widest width that divides every address, stride
// and size (chosen on the host), so a bf16 512+64 row is 72 16-byte vectors: 3 per lane.
#pragma once

#include "common.cuh"

namespace mla_kv {

// Bytes a lane carries per row per pass: 48 = 3 x 16 B covers a 1152-byte row in one pass with a
// full warp and costs 12 registers per row; wider rows loop. Narrow vectors still take a register
// each, so their count is capped to keep 4 rows a warp free of spills.
constexpr int kVectorBytesPerLane = 48;
constexpr int kMaxVectorsPerLane = 12;
__host__ __device__ constexpr int VectorsPerLane(int v) {
  return kVectorBytesPerLane / v < kMaxVectorsPerLane ? kVectorBytesPerLane / v : kMaxVectorsPerLane;
}

/*!
 * \brief The body of the vector path: rows [nope | rope] into cache slots named by loc, one warp
 *        per ROWS rows.
 * \tparam V     vector width in bytes (16, 8, 4, 2, 1)
 * \tparam ROWS  rows per warp (1, 2, 4)
 * \tparam LocT  int32_t or int64_t
 */
template <int V, int ROWS, typename LocT>
__device__ __forceinline__ void SetKvBufferVectorBody(const SetKvBufferParams& p) {
  using Vec = typename VecOf<V>::type;
  constexpr int K = VectorsPerLane(V);
  const int lane = threadIdx.x & 31;
  const int warps_per_block = blockDim.x >> 5;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * warps_per_block * ROWS;
  const int64_t nope_vecs = p.nope_bytes / V;
  const int64_t row_vecs = nope_vecs + p.rope_bytes / V;

  wait_for_previous_grid();
  for (int64_t first = warp_id * ROWS; first < p.n; first += warp_stride) {
    int64_t slot[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) slot[r] = first + r < p.n ? load_loc<LocT>(p.loc, first + r) : -1;
    for (int64_t base = 0; base < row_vecs; base += 32 * K) {
      Vec v[ROWS][K];
      // Data loads do not wait for loc: padding rows are read too (they exist, i < n) and dropped.
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int64_t j = base + lane + 32 * k;
          if (first + r < p.n && j < row_vecs) {
            v[r][k] = load_streaming(reinterpret_cast<const Vec*>(source_of<V>(p, first + r, j, nope_vecs)));
          }
        }
      }
      if (base == 0) {
#pragma unroll
        for (int r = 0; r < ROWS; ++r) slot[r] = checked_slot(p.errors, p.capacity, p.reserved_slot, slot[r], first + r, lane);
      }
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        uint8_t* dst = p.cache + slot[r] * p.cache_row_stride;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int64_t j = base + lane + 32 * k;
          if (slot[r] >= 0 && j < row_vecs) reinterpret_cast<Vec*>(dst)[j] = v[r][k];
        }
      }
    }
  }
  allow_next_grid_to_launch();
}

/*! \brief The vector path with 1 or 2 rows a warp: at most 120 registers, no bound needed. */
template <int V, int ROWS, typename LocT>
__global__ void SetKvBufferVectorKernel(const SetKvBufferParams p) {
  SetKvBufferVectorBody<V, ROWS, LocT>(p);
}

/*! \brief The vector path with 4 rows a warp: narrow vectors need up to 145 registers unbounded. */
template <int V, typename LocT>
__global__ void __launch_bounds__(kMaxThreadsPerBlock) SetKvBufferVectorKernel4Rows(const SetKvBufferParams p) {
  SetKvBufferVectorBody<V, 4, LocT>(p);
}

// ---- launch table ---------------------------------------------------------------------------

template <int V, int ROWS, typename LocT>
cudaError_t LaunchVector(const SetKvBufferParams& p, int warps, bool pdl, cudaStream_t stream) {
  const int64_t rows_per_block = static_cast<int64_t>(warps) * ROWS;
  // The kernel strides over the grid, so capping the block count only matters past 2^31 rows.
  const int64_t blocks = (p.n + rows_per_block - 1) / rows_per_block;
  const unsigned grid = static_cast<unsigned>(blocks < 0x7fffffff ? blocks : 0x7fffffff);
  if constexpr (ROWS == 4) {
    return LaunchWrite(SetKvBufferVectorKernel4Rows<V, LocT>, grid, warps * 32, 0, stream, pdl, p);
  } else {
    return LaunchWrite(SetKvBufferVectorKernel<V, ROWS, LocT>, grid, warps * 32, 0, stream, pdl, p);
  }
}

template <int V, typename LocT>
cudaError_t LaunchVectorRows(const SetKvBufferParams& p, int warps, int rows, bool pdl, cudaStream_t stream) {
  switch (rows) {
    case 1: return LaunchVector<V, 1, LocT>(p, warps, pdl, stream);
    case 2: return LaunchVector<V, 2, LocT>(p, warps, pdl, stream);
    case 4: return LaunchVector<V, 4, LocT>(p, warps, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <typename LocT>
cudaError_t LaunchVectorWidth(const SetKvBufferParams& p, int vec_bytes, int warps, int rows, bool pdl,
                              cudaStream_t stream) {
  switch (vec_bytes) {
    case 16: return LaunchVectorRows<16, LocT>(p, warps, rows, pdl, stream);
    case 8: return LaunchVectorRows<8, LocT>(p, warps, rows, pdl, stream);
    case 4: return LaunchVectorRows<4, LocT>(p, warps, rows, pdl, stream);
    case 2: return LaunchVectorRows<2, LocT>(p, warps, rows, pdl, stream);
    case 1: return LaunchVectorRows<1, LocT>(p, warps, rows, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

/*!
 * \brief Launches the vector path. Arguments were validated by the caller (capi.cu).
 * \param loc_bytes  4 (int32 loc) or 8 (int64 loc)
 * \param vec_bytes  the widest width dividing every address, stride and size
 * \param pdl        launch with programmatic stream serialization
 */
inline cudaError_t SetKvBufferVector(const SetKvBufferParams& p, int loc_bytes, int vec_bytes, int warps,
                                     int rows, bool pdl, cudaStream_t stream) {
  return loc_bytes == 8 ? LaunchVectorWidth<int64_t>(p, vec_bytes, warps, rows, pdl, stream)
                        : LaunchVectorWidth<int32_t>(p, vec_bytes, warps, rows, pdl, stream);
}

}  // namespace mla_kv
