// peers.cuh — the kernels engines already have, re-implemented from their descriptions so that
// `bun run bench` measures mla-kv beside them in one run. Not part of the shipped library.
//
//   PlainWarpCopyKernel  the kernel any engineer writes first: one warp a row, the row size a
//                        compile-time constant, 32-bit row index, each lane ceil(row / 512)
//                        16-byte vectors, all loads then all stores; 4 warps a block (8 above 768
//                        rows). Under PDL it waits before its first read and signals its
//                        dependents after its last store (EARLY_SIGNAL = false), or right at the
//                        start (EARLY_SIGNAL = true), the two placements a PDL-aware kernel uses.
//   SeedRowKernel        the seed's improved Triton design: one CTA of 4 warps a row, a block of
//                        BLOCK = next power of two of the row's elements, each thread BLOCK / 128
//                        consecutive elements, masked past the row.
//   BlockPerChunkKernel  the 1D Triton kernel engines started from, which the seed row design
//                        improved on: one 128-thread CTA per (row, 128-element chunk), one element
//                        a thread (a 576-element bf16 row is 5 CTAs of 2-byte accesses).
//   EmptyPdlKernel       the launch floor under PDL: wait, signal, nothing else.
// Every kernel is correct with and without programmatic dependent launch: griddepcontrol is a
// no-op when the launch did not ask for it.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace mla_kv_bench {

__device__ __forceinline__ void PeerWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void PeerSignal() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// ---- plain warp copy ----------------------------------------------------------------------------

template <int NOPE_BYTES, int ROPE_BYTES, bool EARLY_SIGNAL>
__global__ void PlainWarpCopyKernel(uint8_t* cache, int cache_row_stride, const int64_t* loc, int n,
                                    const uint8_t* nope, int nope_row_stride, const uint8_t* rope, int rope_row_stride) {
  constexpr int kRow = NOPE_BYTES + ROPE_BYTES;
  constexpr int kVecs = kRow / 16;
  constexpr int kPerLane = (kRow + 511) / 512;
  static_assert(NOPE_BYTES % 16 == 0 && ROPE_BYTES % 16 == 0, "16-byte vectors");
  if (EARLY_SIGNAL) PeerSignal();
  PeerWait();
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row < n) {
    const int64_t slot = loc[row];
    uint4 v[kPerLane];
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int j = lane + 32 * k;
      if (j < kVecs) {
        v[k] = j < NOPE_BYTES / 16 ? reinterpret_cast<const uint4*>(nope + row * nope_row_stride)[j]
                                   : reinterpret_cast<const uint4*>(rope + row * rope_row_stride)[j - NOPE_BYTES / 16];
      }
    }
    if (slot >= 0) {
      uint4* dst = reinterpret_cast<uint4*>(cache + slot * cache_row_stride);
#pragma unroll
      for (int k = 0; k < kPerLane; ++k) {
        const int j = lane + 32 * k;
        if (j < kVecs) dst[j] = v[k];
      }
    }
  }
  if (!EARLY_SIGNAL) PeerSignal();
}

// ---- the seed's row design --------------------------------------------------------------------

template <int V> struct PeerVec;
template <> struct PeerVec<16> { using type = uint4; };
template <> struct PeerVec<8> { using type = uint2; };

// Triton keeps each thread's BLOCK / 128 elements in one vector register when the row's
// divisibility allows it, as here (512 + 64 bf16: 16 bytes a thread; 528 + 128 u8: 8 bytes).
template <int ELEM_BYTES, int NOPE, int ROPE>
__global__ void SeedRowKernel(uint8_t* cache, int64_t cache_row_stride, const int64_t* loc, const uint8_t* nope,
                              int64_t nope_row_stride, const uint8_t* rope, int64_t rope_row_stride) {
  constexpr int kRow = NOPE + ROPE;
  constexpr int kBlock = kRow <= 128 ? 128 : kRow <= 256 ? 256 : kRow <= 512 ? 512 : kRow <= 1024 ? 1024 : 2048;
  constexpr int kPerThread = kBlock / 128;
  constexpr int kBytes = kPerThread * ELEM_BYTES;
  static_assert(NOPE % kPerThread == 0 && ROPE % kPerThread == 0, "a thread's elements lie in one part");
  using Vec = typename PeerVec<kBytes>::type;
  PeerWait();
  const int64_t i = blockIdx.x;
  const int64_t slot = loc[i];
  const int col = threadIdx.x * kPerThread;
  Vec v;
  if (col < NOPE) v = *reinterpret_cast<const Vec*>(nope + i * nope_row_stride + col * ELEM_BYTES);
  else if (col < kRow) v = *reinterpret_cast<const Vec*>(rope + i * rope_row_stride + (col - NOPE) * ELEM_BYTES);
  if (slot >= 0 && col < kRow) *reinterpret_cast<Vec*>(cache + slot * cache_row_stride + col * ELEM_BYTES) = v;
  PeerSignal();
}

// ---- one CTA per 128-element chunk ----------------------------------------------------------------

constexpr int kChunkElems = 128;

// blockIdx.x = row * chunks_per_row + chunk: the 2-D (row, chunk) program grid flattened.
template <typename T>
__global__ void BlockPerChunkKernel(T* cache, int64_t cache_row_stride, const int64_t* loc, const T* nope,
                                    int64_t nope_row_stride, int nope_elems, const T* rope, int64_t rope_row_stride,
                                    int rope_elems, int chunks_per_row) {
  PeerWait();
  const int64_t i = blockIdx.x / chunks_per_row;
  const int col = static_cast<int>(blockIdx.x % chunks_per_row) * kChunkElems + threadIdx.x;
  const int64_t slot = loc[i];
  if (slot >= 0) {
    T* dst = cache + slot * cache_row_stride;
    if (col < nope_elems) dst[col] = nope[i * nope_row_stride + col];
    else if (col < nope_elems + rope_elems) dst[col] = rope[i * rope_row_stride + (col - nope_elems)];
  }
  PeerSignal();
}

__global__ void EmptyPdlKernel() {
  PeerWait();
  PeerSignal();
}

// ---- launches ---------------------------------------------------------------------------------

template <typename Kernel, typename... Args>
cudaError_t LaunchPeer(Kernel kernel, unsigned grid, unsigned threads, cudaStream_t stream, bool pdl, Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(threads);
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  if (pdl) {
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
  }
  const cudaError_t e = cudaLaunchKernelEx(&config, kernel, args...);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return e;
  }
  return cudaGetLastError();
}

/*!
 * \brief The plain warp copy of one of the two benchmarked layouts (row_bytes 1152: 1024 + 128,
 *        or 656: 528 + 128), int64 loc.
 */
inline cudaError_t PlainWarpCopy(int row_bytes, bool early_signal, bool pdl, uint8_t* cache, int cache_row_stride,
                                 const int64_t* loc, int n, const uint8_t* nope, int nope_row_stride,
                                 const uint8_t* rope, int rope_row_stride, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int warps = n > 768 ? 8 : 4;
  const unsigned grid = static_cast<unsigned>((n + warps - 1) / warps);
#define MLA_KV_PLAIN(NOPE, ROPE, EARLY)                                                                                   \
  return LaunchPeer(PlainWarpCopyKernel<NOPE, ROPE, EARLY>, grid, warps * 32, stream, pdl, cache, cache_row_stride, loc, \
                    n, nope, nope_row_stride, rope, rope_row_stride)
  if (row_bytes == 1152) {
    if (early_signal) MLA_KV_PLAIN(1024, 128, true);
    MLA_KV_PLAIN(1024, 128, false);
  }
  if (row_bytes == 656) {
    if (early_signal) MLA_KV_PLAIN(528, 128, true);
    MLA_KV_PLAIN(528, 128, false);
  }
#undef MLA_KV_PLAIN
  return cudaErrorInvalidValue;
}

/*! \brief The seed row design for bf16 512 + 64 (elem_bytes 2) or u8 528 + 128 (elem_bytes 1), int64 loc. */
inline cudaError_t SeedRow(int elem_bytes, bool pdl, void* cache, int64_t cache_row_stride, const int64_t* loc, int n,
                           const void* nope, int64_t nope_row_stride, const void* rope, int64_t rope_row_stride,
                           cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  auto* c = static_cast<uint8_t*>(cache);
  auto* a = static_cast<const uint8_t*>(nope);
  auto* b = static_cast<const uint8_t*>(rope);
  if (elem_bytes == 2) {
    return LaunchPeer(SeedRowKernel<2, 512, 64>, n, 128, stream, pdl, c, cache_row_stride, loc, a, nope_row_stride, b,
                      rope_row_stride);
  }
  if (elem_bytes == 1) {
    return LaunchPeer(SeedRowKernel<1, 528, 128>, n, 128, stream, pdl, c, cache_row_stride, loc, a, nope_row_stride, b,
                      rope_row_stride);
  }
  return cudaErrorInvalidValue;
}

/*!
 * \brief One CTA per (row, 128-element chunk), elem_bytes 2 (bf16/fp16) or 1 (u8), int64 loc;
 *        strides and part sizes in bytes.
 */
inline cudaError_t BlockPerChunk(int elem_bytes, bool pdl, void* cache, int64_t cache_row_stride, const int64_t* loc,
                                 int n, const void* nope, int64_t nope_row_stride, int nope_bytes, const void* rope,
                                 int64_t rope_row_stride, int rope_bytes, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int nope_elems = nope_bytes / elem_bytes, rope_elems = rope_bytes / elem_bytes;
  const int chunks = (nope_elems + rope_elems + kChunkElems - 1) / kChunkElems;
  const unsigned grid = static_cast<unsigned>(static_cast<int64_t>(n) * chunks);
  if (elem_bytes == 2) {
    return LaunchPeer(BlockPerChunkKernel<uint16_t>, grid, kChunkElems, stream, pdl, static_cast<uint16_t*>(cache),
                      cache_row_stride / 2, loc, static_cast<const uint16_t*>(nope), nope_row_stride / 2, nope_elems,
                      static_cast<const uint16_t*>(rope), rope_row_stride / 2, rope_elems, chunks);
  }
  if (elem_bytes == 1) {
    return LaunchPeer(BlockPerChunkKernel<uint8_t>, grid, kChunkElems, stream, pdl, static_cast<uint8_t*>(cache),
                      cache_row_stride, loc, static_cast<const uint8_t*>(nope), nope_row_stride, nope_elems,
                      static_cast<const uint8_t*>(rope), rope_row_stride, rope_elems, chunks);
  }
  return cudaErrorInvalidValue;
}

inline cudaError_t EmptyPdl(bool pdl, cudaStream_t stream) { return LaunchPeer(EmptyPdlKernel, 1, 32, stream, pdl); }

}  // namespace mla_kv_bench
