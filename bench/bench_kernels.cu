// bench_kernels.cu — libmla_kv_bench.so: the reference kernels `bun run bench` times beside the
// product (the baseline design and the empty-kernel launch floor), behind the same status
// convention as the main library. Not part of the shipped package.
#include <cstdint>
#include <cstdio>
#include <string>

#include "baseline.cuh"

namespace {
thread_local std::string t_last_error;
int32_t Status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return 0;
  t_last_error = std::string(what) + ": " + cudaGetErrorString(e);
  return 4;  // MLA_KV_ERR_CUDA
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* mla_kv_bench_last_error(void) { return t_last_error.c_str(); }

// The seed's design: one CTA of 128 threads per (row, 128-element block), one element a thread.
// elem_bytes 2 or 1; loc is int64.
__attribute__((visibility("default"))) int32_t mla_kv_bench_baseline(void* stream, int32_t elem_bytes, void* cache,
                                                                     int64_t cache_row_stride, const void* loc, int64_t n,
                                                                     const void* nope, int64_t nope_row_stride,
                                                                     int64_t nope_bytes, const void* rope,
                                                                     int64_t rope_row_stride, int64_t rope_bytes) {
  if ((elem_bytes != 1 && elem_bytes != 2) || n < 0 || !cache || !loc || !nope || !rope) {
    t_last_error = "mla_kv_bench_baseline: bad argument";
    return 1;
  }
  return Status(mla_kv_bench::BaselineSetKvBuffer(elem_bytes, cache, cache_row_stride, static_cast<const int64_t*>(loc), n,
                                                  nope, nope_row_stride, nope_bytes, rope, rope_row_stride, rope_bytes,
                                                  static_cast<cudaStream_t>(stream)),
                "launch of BaselineSetKvBufferKernel");
}

// The launch floor: one empty kernel of one warp.
__attribute__((visibility("default"))) int32_t mla_kv_bench_empty(void* stream) {
  mla_kv_bench::EmptyKernel<<<1, 32, 0, static_cast<cudaStream_t>(stream)>>>();
  return Status(cudaGetLastError(), "launch of EmptyKernel");
}

}  // extern "C"
