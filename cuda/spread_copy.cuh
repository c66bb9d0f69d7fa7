// spread_copy.cuh — the small-n design: one block a row, one vector a thread, every arch from sm_75.
//
// At n of a few rows the write is one memory round trip plus launch, and the warp-per-row kernels
// put a row's 36-73 vectors on one warp, two or three a lane. Spreading the row over
// ceil(vectors / 32) warps gives each thread a single load and a single store, so no lane issues
// more than one memory instruction per row and the row's bytes are all in flight at once on
// several schedulers. ROWS rows a block (1, 2 or 4) trades block count against loads per thread.
// Row sizes, vector widths and the early dependent-launch signal are those of the specialized
// family (specialized_copy.cuh), whose SpecializedRow describes each size.
#pragma once

#include "common.cuh"
#include "specialized_copy.cuh"

namespace mla_kv {

/*! \brief Warps one spread row takes: its vectors, 32 to a warp. */
template <int ROW_BYTES>
constexpr int SpreadWarps() {
  return (SpecializedRow<ROW_BYTES>::VECS + 31) / 32;
}

/*!
 * \brief Thread t of block b writes vector t of rows [b * ROWS, b * ROWS + ROWS).
 * \tparam ROW_BYTES  one of the specialized row sizes
 * \tparam ROWS       rows a block (1, 2, 4)
 * \tparam LocT       int32_t or int64_t
 * \tparam OffT       as in SpecializedCopyKernel
 */
template <int ROW_BYTES, int ROWS, typename LocT, typename OffT>
__global__ void SpreadCopyKernel(const SetKvBufferParams p) {
  using Row = SpecializedRow<ROW_BYTES>;
  using Vec = typename VecOf<Row::V>::type;
  constexpr int V = Row::V, VECS = Row::VECS;
  allow_next_grid_to_launch();
  wait_for_previous_grid();
  const uint32_t n = static_cast<uint32_t>(p.n);
  const uint32_t first = blockIdx.x * ROWS;
  int64_t slot[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (ROWS == 1 || first + r < n) slot[r] = static_cast<int64_t>(__ldg(static_cast<const LocT*>(p.loc) + first + r));
  }
  const uint32_t j = threadIdx.x;
  const bool active = VECS % 32 == 0 || j < VECS;
  const uint32_t nope_vecs = static_cast<uint32_t>(p.nope_bytes) / V;
  Vec v[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const uint32_t i = first + r;
    if ((ROWS == 1 || i < n) && active) {
      const uint8_t* src = j < nope_vecs
                               ? p.nope + static_cast<OffT>(i) * static_cast<OffT>(p.nope_row_stride) + j * V
                               : p.rope + static_cast<OffT>(i) * static_cast<OffT>(p.rope_row_stride) + (j - nope_vecs) * V;
      v[r] = load_streaming(reinterpret_cast<const Vec*>(src));
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if ((ROWS == 1 || first + r < n) && active && lean_should_write(slot[r], p)) {
      reinterpret_cast<Vec*>(lean_row<OffT>(p.cache, slot[r], p.cache_row_stride))[j] = v[r];
    }
  }
  // One report per skipped row: the block's first thread plays the lane-0 role.
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    if (ROWS == 1 || first + r < n) report_if_out_of_range(slot[r], p, first + r, j == 0);
  }
}

// ---- launch table ---------------------------------------------------------------------------

template <int ROW_BYTES, typename LocT, typename OffT>
cudaError_t LaunchSpreadRows(const SetKvBufferParams& p, int rows, bool pdl, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((p.n + rows - 1) / rows);
  const unsigned threads = SpreadWarps<ROW_BYTES>() * 32;
  switch (rows) {
    case 1: return LaunchWrite(SpreadCopyKernel<ROW_BYTES, 1, LocT, OffT>, grid, threads, 0, stream, pdl, p);
    case 2: return LaunchWrite(SpreadCopyKernel<ROW_BYTES, 2, LocT, OffT>, grid, threads, 0, stream, pdl, p);
    case 4: return LaunchWrite(SpreadCopyKernel<ROW_BYTES, 4, LocT, OffT>, grid, threads, 0, stream, pdl, p);
    default: return cudaErrorInvalidValue;
  }
}

template <int ROW_BYTES>
cudaError_t LaunchSpreadSize(const SetKvBufferParams& p, int loc_bytes, int rows, bool pdl, cudaStream_t stream) {
  const bool offsets32 = SpecializedOffsetsFit32(p);
  if (loc_bytes == 8) {
    return offsets32 ? LaunchSpreadRows<ROW_BYTES, int64_t, uint32_t>(p, rows, pdl, stream)
                     : LaunchSpreadRows<ROW_BYTES, int64_t, uint64_t>(p, rows, pdl, stream);
  }
  return offsets32 ? LaunchSpreadRows<ROW_BYTES, int32_t, uint32_t>(p, rows, pdl, stream)
                   : LaunchSpreadRows<ROW_BYTES, int32_t, uint64_t>(p, rows, pdl, stream);
}

/*!
 * \brief Launches the spread path; the caller checked what SetKvBufferSpecialized needs. Its
 *        block size is fixed by the row (SpreadWarps), so it takes no warp count.
 */
inline cudaError_t SetKvBufferSpread(const SetKvBufferParams& p, int loc_bytes, int rows, bool pdl,
                                     cudaStream_t stream) {
  switch (p.nope_bytes + p.rope_bytes) {
    case 1152: return LaunchSpreadSize<1152>(p, loc_bytes, rows, pdl, stream);
    case 1024: return LaunchSpreadSize<1024>(p, loc_bytes, rows, pdl, stream);
    case 656: return LaunchSpreadSize<656>(p, loc_bytes, rows, pdl, stream);
    case 584: return LaunchSpreadSize<584>(p, loc_bytes, rows, pdl, stream);
    case 576: return LaunchSpreadSize<576>(p, loc_bytes, rows, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace mla_kv
