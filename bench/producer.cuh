// producer.cuh — a stand-in for the kernel that runs right before the write in a layer, so the
// benchmark can show what programmatic dependent launch saves between the two.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace mla_kv_bench {

// The producer of bench_kernels.cu: x [n, 576] bf16 into kNope [n, 512] and kRope [n, 64], one
// thread per 16-byte vector (72 a row).
constexpr int64_t kProducerRowVectors = 72;
constexpr int64_t kProducerNopeVectors = 64;
__global__ void ProducerKernel(const uint4* x, uint4* nope, uint4* rope, int64_t n) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = idx < n * kProducerRowVectors;
  uint4 v = {};
  if (live) v = x[idx];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  if (!live) return;
  const int64_t row = idx / kProducerRowVectors, col = idx % kProducerRowVectors;
  if (col < kProducerNopeVectors) {
    nope[row * kProducerNopeVectors + col] = v;
  } else {
    rope[row * (kProducerRowVectors - kProducerNopeVectors) + (col - kProducerNopeVectors)] = v;
  }
}

}  // namespace mla_kv_bench
