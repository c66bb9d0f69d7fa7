// common.cuh — what both write paths share: the argument block, row addressing, the loc load and
// the out-of-range error word the kernels count into.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace mla_kv {

// Rows skipped because loc >= capacity, and the smallest row index i that did so (~0ull when
// none). Each stream that writes owns one in device memory (error_slots.cuh); a write's kernels
// count into the one of the stream they run on, and mla_kv_check_errors reads and clears it.
struct OutOfRangeWord {
  unsigned long long count;
  unsigned long long first_index;
};

// Everything a copying write kernel needs, by value (one kernel parameter). Sizes and strides
// are in bytes.
struct SetKvBufferParams {
  uint8_t* cache;            // [capacity, cache_row_stride]
  const void* loc;           // [n] int32 or int64 (the kernel's LocT)
  const uint8_t* nope;       // [n, nope_row_stride], nope_bytes used per row
  const uint8_t* rope;       // [n, rope_row_stride], rope_bytes used per row
  int64_t capacity;          // rows in the cache; loc >= capacity is skipped and reported
  int64_t cache_row_stride;
  int64_t nope_row_stride;
  int64_t rope_row_stride;
  int64_t nope_bytes;
  int64_t rope_bytes;
  int64_t n;
  int64_t reserved_slot;     // a slot never written (engines' padding slot); -1 when none
  OutOfRangeWord* errors;    // the error slot of the write's stream (or of the graph it is captured into)
};
// Thirteen 8-byte fields: the block is one kernel parameter, copied at every launch.
static_assert(sizeof(SetKvBufferParams) == 104, "SetKvBufferParams is thirteen 8-byte fields");

template <typename LocT>
__device__ __forceinline__ int64_t load_loc(const void* loc, int64_t i) {
  // Every lane of the warp reads the same address: one broadcast transaction.
  return static_cast<int64_t>(__ldg(static_cast<const LocT*>(loc) + i));
}

// Turns a loaded loc value into the slot to write, or -1 when row i must be skipped (padding, the
// reserved slot, or out of range). Kept separate from the load so kernels can issue the row's
// data loads before they need the slot: the source address depends only on i, so the loc load and
// the data loads share one memory round trip instead of two in sequence.
// The reserved slot costs one compare: it is skipped exactly like padding, silently, because
// writing it is what engines pad *with* (a finite row that padded attention reads).
// Only lane 0 reports, so each skipped row is counted once, into `errors`.
__device__ __forceinline__ int64_t checked_slot(OutOfRangeWord* errors, int64_t capacity, int64_t reserved_slot,
                                                int64_t slot, int64_t i, int lane) {
  if (slot < 0 || slot == reserved_slot) return -1;  // negative loc is padding (vLLM's convention)
  if (slot >= capacity) {
    if (lane == 0) {
      atomicAdd(&errors->count, 1ull);
      atomicMin(&errors->first_index, static_cast<unsigned long long>(i));
    }
    return -1;
  }
  return slot;
}

// 16 warps of 32 threads is the largest block the launch tables make. A kernel that needs more
// than 128 registers a thread could not launch that way (64 K registers a block), so such kernels
// carry __launch_bounds__(kMaxThreadsPerBlock). Only those: the bound changes code generation,
// and on the small kernels it cost ~0.3 µs at small n.
constexpr int kMaxThreadsPerBlock = 512;

// Programmatic dependent launch. Both are no-ops when the grid was launched without the
// programmatic-serialization attribute, so every kernel carries them and the launch decides.
// wait: blocks until the previous grid on the stream has completed and its memory is visible;
// it must precede the first read of anything that grid may have written (loc, nope, rope).
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
// launch_dependents: the next grid may start its prologue; it still waits for this grid's
// completion before its own reads, so issuing this after the last store is always safe.
__device__ __forceinline__ void allow_next_grid_to_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Launches `kernel` with its one by-value argument block, with programmatic stream serialization
// when `pdl` is set.
template <typename Kernel, typename Params>
cudaError_t LaunchWrite(Kernel kernel, unsigned grid, unsigned threads, size_t shared_bytes, cudaStream_t stream,
                        bool pdl, const Params& p) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  if (pdl) {
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
  }
  cudaError_t e = cudaLaunchKernelEx(&config, kernel, p);
  // A failed launch also leaves its error pending; clear it, or the next good launch reports it.
  if (e != cudaSuccess) {
    cudaGetLastError();
    return e;
  }
  return cudaGetLastError();
}

// A V-byte vector type with V-byte alignment, so loads and stores compile to one instruction.
template <int V> struct VecOf;
template <> struct VecOf<16> { using type = uint4; };
template <> struct VecOf<8> { using type = uint2; };
template <> struct VecOf<4> { using type = uint32_t; };
template <> struct VecOf<2> { using type = uint16_t; };
template <> struct VecOf<1> { using type = uint8_t; };

// Source address of vector j (in V-byte units) of the concatenated row [nope | rope] of row i.
template <int V>
__device__ __forceinline__ const uint8_t* source_of(const SetKvBufferParams& p, int64_t i, int64_t j,
                                                    int64_t nope_vecs) {
  return j < nope_vecs ? p.nope + i * p.nope_row_stride + j * V
                       : p.rope + i * p.rope_row_stride + (j - nope_vecs) * V;
}

// Sources are read exactly once, through the read-only path (ld.global.nc). Not ld.global.cs:
// marking the source lines evict-first looked right but measured 2.5-3 % slower at n = 16384 on
// an H100 (lab experiment 2, bench/NOTES.md), with plain stores.
template <typename T>
__device__ __forceinline__ T load_streaming(const T* ptr) {
  return __ldg(ptr);
}

}  // namespace mla_kv
