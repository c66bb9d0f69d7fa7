// specialized_copy.cuh — the register copy compiled for one row size, every arch from sm_75.
//
// The generic vector path (vector_copy.cuh) takes the row length at run time, walks a grid-stride
// loop and computes 64-bit addresses for every vector. For the row sizes engines use, all of that
// is known or bounded in advance, so this family is the lean kernel those sizes deserve:
//   - the row size, the vector width and the vectors a lane carries are template constants, so a
//     lane's loads are a fixed, fully unrolled sequence with no bounds loop;
//   - the grid covers n exactly (one warp per ROWS rows), so there is no loop and no loop state;
//   - row indices are 32-bit (n < 2^31 is not checked: it follows from memory, as the sources hold
//     n rows of at least 576 bytes, over 1 TB at 2^31 rows), and with OffT = uint32_t so
//     are the byte offsets into the cache and the sources, when every extent fits in 32 bits;
//   - under programmatic dependent launch the kernel lets its dependents launch first thing: they
//     wait (griddepcontrol.wait) for this grid to complete before they read, so the early signal
//     is always safe, and it takes the next kernel's launch latency off the critical path.
// All of a warp's loads (loc and every data vector of its ROWS rows) are issued before the first
// store, so a row costs one memory round trip, as in the generic kernel.
#pragma once

#include "common.cuh"

namespace mla_kv {

/*!
 * \brief What a specialized row size compiles to.
 * \tparam ROW_BYTES  bytes a cache row receives (nope + rope)
 * V is the widest vector the size allows (8 for 584 = 73 x 8, else 16), K the vectors a lane
 * carries per row so that one warp covers the row in one pass.
 */
template <int ROW_BYTES>
struct SpecializedRow {
  static constexpr int V = ROW_BYTES % 16 == 0 ? 16 : 8;
  static constexpr int VECS = ROW_BYTES / V;
  static constexpr int K = (VECS + 31) / 32;
  static_assert(ROW_BYTES % V == 0, "a specialized row is a whole number of vectors");
};

/*!
 * \brief Whether row i's slot is written, decided without branches. One unsigned compare covers
 *        both padding (loc < 0 wraps to a huge value) and loc >= capacity; the reserved slot is a
 *        second compare. Found by the n = 1 profile: the seed row design stores ~7 instructions
 *        after its loc arrives, and every instruction between the loc and the store is latency at
 *        small n, so the out-of-range report is taken off that path (report_if_out_of_range,
 *        after the stores).
 */
__device__ __forceinline__ bool lean_should_write(int64_t slot, const SetKvBufferParams& p) {
  return static_cast<uint64_t>(slot) < static_cast<uint64_t>(p.capacity) && slot != p.reserved_slot;
}

/*! \brief Counts row i as skipped when its loc was >= capacity; `lead` is one thread of the row. */
__device__ __forceinline__ void report_if_out_of_range(int64_t slot, const SetKvBufferParams& p, int64_t i, bool lead) {
  if (lead && slot >= p.capacity) checked_slot(p.errors, p.capacity, -1, slot, i, 0);
}

/*!
 * \brief The address of a slot's row. With 32-bit offsets it is one multiply-add of the slot by
 *        the stride onto the cache pointer (IMAD.WIDE.U32), right after the slot arrives.
 */
template <typename OffT>
__device__ __forceinline__ uint8_t* lean_row(uint8_t* base, int64_t slot, int64_t stride) {
  if constexpr (sizeof(OffT) == 4) {
    return base + static_cast<uint64_t>(static_cast<uint32_t>(slot)) * static_cast<uint32_t>(stride);
  } else {
    return base + static_cast<uint64_t>(slot) * static_cast<uint64_t>(stride);
  }
}

/*!
 * \brief One warp writes ROWS consecutive rows of ROW_BYTES bytes; the grid covers n exactly.
 * \tparam ROW_BYTES  one of the specialized row sizes
 * \tparam ROWS       rows per warp (1, 2, 4)
 * \tparam LocT       int32_t or int64_t
 * \tparam OffT       uint32_t when every byte extent (cache, nope, rope) fits in 32 bits, else uint64_t
 */
template <int ROW_BYTES, int ROWS, typename LocT, typename OffT>
__global__ void SpecializedCopyKernel(const SetKvBufferParams p) {
  using Row = SpecializedRow<ROW_BYTES>;
  using Vec = typename VecOf<Row::V>::type;
  constexpr int V = Row::V, K = Row::K, VECS = Row::VECS;
  allow_next_grid_to_launch();
  wait_for_previous_grid();
  const int lane = threadIdx.x & 31;
  const uint32_t n = static_cast<uint32_t>(p.n);
  const uint32_t first = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * ROWS;
  // loc first: everything after the data loads waits for it.
  int64_t slot[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (first + r < n) slot[r] = static_cast<int64_t>(__ldg(static_cast<const LocT*>(p.loc) + first + r));
  }
  const uint32_t nope_vecs = static_cast<uint32_t>(p.nope_bytes) / V;
  Vec v[ROWS][K];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const uint32_t i = first + r;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t j = lane + 32 * k;
      if (i < n && (VECS % 32 == 0 || j < VECS)) {
        const uint8_t* src = j < nope_vecs
                                 ? p.nope + static_cast<OffT>(i) * static_cast<OffT>(p.nope_row_stride) + j * V
                                 : p.rope + static_cast<OffT>(i) * static_cast<OffT>(p.rope_row_stride) + (j - nope_vecs) * V;
        v[r][k] = load_streaming(reinterpret_cast<const Vec*>(src));
      }
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    // Warp-uniform: every lane read the same loc.
    if (first + r < n && lean_should_write(slot[r], p)) {
      Vec* dst = reinterpret_cast<Vec*>(lean_row<OffT>(p.cache, slot[r], p.cache_row_stride));
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t j = lane + 32 * k;
        if (VECS % 32 == 0 || j < VECS) dst[j] = v[r][k];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (first + r < n) report_if_out_of_range(slot[r], p, first + r, lane == 0);
  }
}

// ---- launch table ---------------------------------------------------------------------------

template <int ROW_BYTES, int ROWS, typename LocT, typename OffT>
cudaError_t LaunchSpecialized(const SetKvBufferParams& p, int warps, bool pdl, cudaStream_t stream) {
  const int64_t rows_per_block = static_cast<int64_t>(warps) * ROWS;
  const unsigned grid = static_cast<unsigned>((p.n + rows_per_block - 1) / rows_per_block);
  return LaunchWrite(SpecializedCopyKernel<ROW_BYTES, ROWS, LocT, OffT>, grid, warps * 32, 0, stream, pdl, p);
}

template <int ROW_BYTES, typename LocT, typename OffT>
cudaError_t LaunchSpecializedRows(const SetKvBufferParams& p, int warps, int rows, bool pdl, cudaStream_t stream) {
  switch (rows) {
    case 1: return LaunchSpecialized<ROW_BYTES, 1, LocT, OffT>(p, warps, pdl, stream);
    case 2: return LaunchSpecialized<ROW_BYTES, 2, LocT, OffT>(p, warps, pdl, stream);
    case 4: return LaunchSpecialized<ROW_BYTES, 4, LocT, OffT>(p, warps, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <int ROW_BYTES>
cudaError_t LaunchSpecializedSize(const SetKvBufferParams& p, int loc_bytes, bool offsets32, int warps, int rows,
                                  bool pdl, cudaStream_t stream) {
  if (loc_bytes == 8) {
    return offsets32 ? LaunchSpecializedRows<ROW_BYTES, int64_t, uint32_t>(p, warps, rows, pdl, stream)
                     : LaunchSpecializedRows<ROW_BYTES, int64_t, uint64_t>(p, warps, rows, pdl, stream);
  }
  return offsets32 ? LaunchSpecializedRows<ROW_BYTES, int32_t, uint32_t>(p, warps, rows, pdl, stream)
                   : LaunchSpecializedRows<ROW_BYTES, int32_t, uint64_t>(p, warps, rows, pdl, stream);
}

/*! \brief True when every byte offset the kernel forms fits in 32 bits. */
inline bool SpecializedOffsetsFit32(const SetKvBufferParams& p) {
  const uint64_t limit = 1ull << 32;
  const uint64_t n = static_cast<uint64_t>(p.n);
  return static_cast<uint64_t>(p.capacity) * static_cast<uint64_t>(p.cache_row_stride) <= limit &&
         n * static_cast<uint64_t>(p.nope_row_stride) <= limit && n * static_cast<uint64_t>(p.rope_row_stride) <= limit;
}

/*!
 * \brief Launches the specialized path. The caller (capi.cu) validated the arguments and checked
 *        that the row size is specialized, that every address, stride and size is a multiple of
 *        the size's vector width. n < 2^31 follows from memory (see the top of this file).
 * \param loc_bytes  4 (int32 loc) or 8 (int64 loc)
 */
inline cudaError_t SetKvBufferSpecialized(const SetKvBufferParams& p, int loc_bytes, int warps, int rows, bool pdl,
                                          cudaStream_t stream) {
  const bool offsets32 = SpecializedOffsetsFit32(p);
  switch (p.nope_bytes + p.rope_bytes) {
    case 1152: return LaunchSpecializedSize<1152>(p, loc_bytes, offsets32, warps, rows, pdl, stream);
    case 1024: return LaunchSpecializedSize<1024>(p, loc_bytes, offsets32, warps, rows, pdl, stream);
    case 656: return LaunchSpecializedSize<656>(p, loc_bytes, offsets32, warps, rows, pdl, stream);
    case 584: return LaunchSpecializedSize<584>(p, loc_bytes, offsets32, warps, rows, pdl, stream);
    case 576: return LaunchSpecializedSize<576>(p, loc_bytes, offsets32, warps, rows, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace mla_kv
