// tma_store.cuh — the bulk-store write path, sm_90 and newer.
//
// A warp loads a row into registers with 16-byte loads, stages it in its own shared-memory
// buffer, and one lane hands the whole row to the copy engine with a single
// cp.async.bulk.global.shared::cta. The engine then writes the row while the warp already loads
// the next one, so the stores leave the warp's instruction stream entirely: one instruction per
// row instead of a warp-wide store per 512 bytes.
//
// Ordering, per staged row:
//   1. lanes st.shared their vectors (generic proxy);
//   2. every writing lane executes fence.proxy.async.shared::cta, so its writes are visible to
//      the async proxy that the bulk copy reads through;
//   3. __syncwarp, so lane 0 issues only after all lanes have fenced;
//   4. lane 0 issues the bulk store and commits it as one bulk async-group;
//   5. before a buffer is staged again, lane 0 waits with cp.async.bulk.wait_group.read until at
//      most STAGES - 1 groups are still reading shared memory, then __syncwarp releases the lanes.
// At the end lane 0 waits for every group to complete (cp.async.bulk.wait_group 0): the writes
// are then performed, and the shared memory may be released when the block exits.
#pragma once

#include "checks.h"
#include "common.cuh"

namespace mla_kv {

// Two buffers per warp: one being read by the copy engine, one being filled (checks.h, where the
// host's eligibility rule reads the same numbers).
constexpr int kTmaStages = MLA_KV_TMA_STAGES;

// Bytes a lane loads per pass before staging them: 3 x 16 B covers a 1152-byte row in one pass.
constexpr int kVectorBytesPerLaneTma = 48;

// A stage's bytes and a block's shared memory, as checks.h defines them.
__host__ __device__ inline int64_t TmaStageBytes(int64_t row_bytes) { return mla_kv_tma_stage_bytes(row_bytes); }
__host__ __device__ inline int64_t TmaSharedBytes(int warps, int64_t row_bytes) {
  return mla_kv_tma_shared_bytes(warps, row_bytes);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define MLA_KV_HAS_BULK_COPY 1
#endif

__device__ __forceinline__ void bulk_store_row(void* dst_global, const void* src_shared, uint32_t bytes) {
#ifdef MLA_KV_HAS_BULK_COPY
  const uint32_t src = static_cast<uint32_t>(__cvta_generic_to_shared(src_shared));
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst_global), "r"(src), "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void bulk_wait_read() {
#ifdef MLA_KV_HAS_BULK_COPY
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void bulk_wait_all() {
#ifdef MLA_KV_HAS_BULK_COPY
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void fence_proxy_async_shared() {
#ifdef MLA_KV_HAS_BULK_COPY
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/*!
 * \brief Writes rows through shared memory and the bulk copy engine; ROWS consecutive rows a warp.
 * \tparam ROWS  rows per warp (1, 2, 4)
 * \tparam LocT  int32_t or int64_t
 * Requires (checked on the host): sm_90+, every address, stride and size a multiple of 16, and
 * TmaSharedBytes(warps, row bytes) of dynamic shared memory.
 */
template <int ROWS, typename LocT>
__global__ void SetKvBufferTmaKernel(const SetKvBufferParams p) {
#ifdef MLA_KV_HAS_BULK_COPY
  extern __shared__ __align__(128) uint8_t smem[];
  constexpr int K = kVectorBytesPerLaneTma / 16;
  const int lane = threadIdx.x & 31;
  const int warp_in_block = threadIdx.x >> 5;
  const int warps_per_block = blockDim.x >> 5;
  const int64_t warp_id = static_cast<int64_t>(blockIdx.x) * warps_per_block + warp_in_block;
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * warps_per_block * ROWS;
  const int64_t nope_vecs = p.nope_bytes / 16;
  const int64_t row_vecs = nope_vecs + p.rope_bytes / 16;
  const int64_t stage_bytes = TmaStageBytes(p.nope_bytes + p.rope_bytes);
  uint8_t* my_stages = smem + static_cast<int64_t>(warp_in_block) * kTmaStages * stage_bytes;

  int stage = 0;
  wait_for_previous_grid();
  for (int64_t first = warp_id * ROWS; first < p.n; first += warp_stride) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t i = first + r;
      if (i >= p.n) break;
      int64_t slot = load_loc<LocT>(p.loc, i);

      uint4* buf = reinterpret_cast<uint4*>(my_stages + stage * stage_bytes);
      // Loads first: they depend on neither loc nor the buffer, so they overlap both the loc load
      // and the wait below.
      for (int64_t base = 0; base < row_vecs; base += 32 * K) {
        uint4 v[K];
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int64_t j = base + lane + 32 * k;
          if (j < row_vecs) v[k] = load_streaming(reinterpret_cast<const uint4*>(source_of<16>(p, i, j, nope_vecs)));
        }
        if (base == 0) {
          slot = checked_slot(p.errors, p.capacity, p.reserved_slot, slot, i, lane);
          if (slot < 0) break;  // warp-uniform: padding or out of range, nothing staged
          // The buffer we are about to fill was handed to the engine kTmaStages rows ago.
          if (lane == 0) bulk_wait_read<kTmaStages - 1>();
          __syncwarp();
        }
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int64_t j = base + lane + 32 * k;
          if (j < row_vecs) buf[j] = v[k];
        }
      }
      if (slot < 0) continue;
      fence_proxy_async_shared();
      __syncwarp();
      if (lane == 0) {
        bulk_store_row(p.cache + slot * p.cache_row_stride, buf,
                       static_cast<uint32_t>(p.nope_bytes + p.rope_bytes));
      }
      stage = (stage + 1) % kTmaStages;
    }
  }
  if (lane == 0) bulk_wait_all();
  allow_next_grid_to_launch();
#else
  __trap();  // the host never launches this path below sm_90; a launch that did must not pass silently
#endif
}

// ---- launch table ---------------------------------------------------------------------------

template <int ROWS, typename LocT>
cudaError_t LaunchTma(const SetKvBufferParams& p, int warps, bool pdl, cudaStream_t stream) {
  const int64_t shared_bytes = TmaSharedBytes(warps, p.nope_bytes + p.rope_bytes);
  if (shared_bytes > 48 * 1024) {
    // Above 48 KiB a kernel must opt in; the caller already checked the device's limit.
    cudaError_t e = cudaFuncSetAttribute(SetKvBufferTmaKernel<ROWS, LocT>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(shared_bytes));
    if (e != cudaSuccess) return e;
  }
  const int64_t rows_per_block = static_cast<int64_t>(warps) * ROWS;
  const int64_t blocks = (p.n + rows_per_block - 1) / rows_per_block;
  const unsigned grid = static_cast<unsigned>(blocks < 0x7fffffff ? blocks : 0x7fffffff);
  return LaunchWrite(SetKvBufferTmaKernel<ROWS, LocT>, grid, warps * 32, static_cast<size_t>(shared_bytes), stream,
                     pdl, p);
}

template <typename LocT>
cudaError_t LaunchTmaRows(const SetKvBufferParams& p, int warps, int rows, bool pdl, cudaStream_t stream) {
  switch (rows) {
    case 1: return LaunchTma<1, LocT>(p, warps, pdl, stream);
    case 2: return LaunchTma<2, LocT>(p, warps, pdl, stream);
    case 4: return LaunchTma<4, LocT>(p, warps, pdl, stream);
    default: return cudaErrorInvalidValue;
  }
}

/*!
 * \brief Launches the bulk-store path. Arguments, alignment, arch and shared-memory limit were
 *        validated by the caller (capi.cu).
 */
inline cudaError_t SetKvBufferTma(const SetKvBufferParams& p, int loc_bytes, int warps, int rows, bool pdl,
                                  cudaStream_t stream) {
  return loc_bytes == 8 ? LaunchTmaRows<int64_t>(p, warps, rows, pdl, stream)
                        : LaunchTmaRows<int32_t>(p, warps, rows, pdl, stream);
}

}  // namespace mla_kv
