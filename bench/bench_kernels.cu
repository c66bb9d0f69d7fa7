// bench_kernels.cu — libmla_kv_bench.so: the reference kernels `bun run bench` times beside the
// product (the peers engines already have, the empty-kernel launch floor, and a producer kernel to
// put in front of the write), behind the same status convention as the main library. Not part of the
// shipped package.
#include <cstdint>
#include <cstdio>
#include <string>

#include "peers.cuh"
#include "producer.cuh"

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

// A producer: the kernel before the write in a layer, which finishes kNope [n, 512] and
// kRope [n, 64] (bf16, contiguous) from x [n, 576]. Here it copies through registers, one thread per
// 16 bytes; like a PDL-aware kernel it lets the next grid launch once its loads are issued.
__attribute__((visibility("default"))) int32_t mla_kv_bench_producer(void* stream, const void* x, void* nope, void* rope,
                                                                     int64_t n) {
  if (n < 0 || !x || !nope || !rope) {
    t_last_error = "mla_kv_bench_producer: bad argument";
    return 1;
  }
  if (n == 0) return 0;
  const int64_t vectors = n * mla_kv_bench::kProducerRowVectors;
  const unsigned blocks = static_cast<unsigned>((vectors + 255) / 256);
  mla_kv_bench::ProducerKernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const uint4*>(x), static_cast<uint4*>(nope), static_cast<uint4*>(rope), n);
  return Status(cudaGetLastError(), "launch of ProducerKernel");
}

// The launch floor: one empty kernel of one warp that waits and signals under PDL.
__attribute__((visibility("default"))) int32_t mla_kv_bench_empty(void* stream, int32_t pdl) {
  return Status(mla_kv_bench::EmptyPdl(pdl != 0, static_cast<cudaStream_t>(stream)), "launch of EmptyPdlKernel");
}

// The plain warp copy (peers.cuh) of a 1152-byte (1024 + 128) or 656-byte (528 + 128) row, int64
// loc; early_signal: signal dependents first thing rather than after the stores.
__attribute__((visibility("default"))) int32_t mla_kv_bench_plain(void* stream, int32_t pdl, int32_t early_signal,
                                                                  int32_t row_bytes, void* cache, int32_t cache_row_stride,
                                                                  const void* loc, int32_t n, const void* nope,
                                                                  int32_t nope_row_stride, const void* rope,
                                                                  int32_t rope_row_stride) {
  if ((row_bytes != 1152 && row_bytes != 656) || n < 0 || !cache || !loc || !nope || !rope) {
    t_last_error = "mla_kv_bench_plain: bad argument";
    return 1;
  }
  return Status(mla_kv_bench::PlainWarpCopy(row_bytes, early_signal != 0, pdl != 0, static_cast<uint8_t*>(cache),
                                            cache_row_stride, static_cast<const int64_t*>(loc), n,
                                            static_cast<const uint8_t*>(nope), nope_row_stride,
                                            static_cast<const uint8_t*>(rope), rope_row_stride,
                                            static_cast<cudaStream_t>(stream)),
                "launch of PlainWarpCopyKernel");
}

// The seed row design (peers.cuh) for bf16 512 + 64 (elem_bytes 2) or u8 528 + 128 (1), int64 loc.
__attribute__((visibility("default"))) int32_t mla_kv_bench_seed_row(void* stream, int32_t pdl, int32_t elem_bytes,
                                                                     void* cache, int64_t cache_row_stride, const void* loc,
                                                                     int32_t n, const void* nope, int64_t nope_row_stride,
                                                                     const void* rope, int64_t rope_row_stride) {
  if ((elem_bytes != 1 && elem_bytes != 2) || n < 0 || !cache || !loc || !nope || !rope) {
    t_last_error = "mla_kv_bench_seed_row: bad argument";
    return 1;
  }
  return Status(mla_kv_bench::SeedRow(elem_bytes, pdl != 0, cache, cache_row_stride, static_cast<const int64_t*>(loc), n,
                                      nope, nope_row_stride, rope, rope_row_stride, static_cast<cudaStream_t>(stream)),
                "launch of SeedRowKernel");
}

// One CTA per (row, 128-element chunk) (peers.cuh), elem_bytes 2 or 1, int64 loc; bytes.
__attribute__((visibility("default"))) int32_t mla_kv_bench_block_per_chunk(void* stream, int32_t pdl, int32_t elem_bytes,
                                                                            void* cache, int64_t cache_row_stride,
                                                                            const void* loc, int32_t n, const void* nope,
                                                                            int64_t nope_row_stride, int32_t nope_bytes,
                                                                            const void* rope, int64_t rope_row_stride,
                                                                            int32_t rope_bytes) {
  if ((elem_bytes != 1 && elem_bytes != 2) || n < 0 || !cache || !loc || !nope || !rope || nope_bytes % elem_bytes != 0 ||
      rope_bytes % elem_bytes != 0 || cache_row_stride % elem_bytes != 0 || nope_row_stride % elem_bytes != 0 ||
      rope_row_stride % elem_bytes != 0) {
    t_last_error = "mla_kv_bench_block_per_chunk: bad argument";
    return 1;
  }
  return Status(mla_kv_bench::BlockPerChunk(elem_bytes, pdl != 0, cache, cache_row_stride, static_cast<const int64_t*>(loc), n,
                                            nope, nope_row_stride, nope_bytes, rope, rope_row_stride, rope_bytes,
                                            static_cast<cudaStream_t>(stream)),
                "launch of BlockPerChunkKernel");
}

}  // extern "C"
