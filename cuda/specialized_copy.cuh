// specialized_copy.cuh — the register copy compiled for one row size (MLA_KV_PATH_SPECIALIZED).
#pragma once

#include "common.cuh"

namespace mla_kv {

// Not built yet: the kernels for the sizes of MLA_KV_SPECIALIZED_ROWS come here.
inline cudaError_t SetKvBufferSpecialized(const SetKvBufferParams&, int /*loc_bytes*/, int /*warps*/, int /*rows*/,
                                          bool /*pdl*/, cudaStream_t) {
  return cudaErrorNotSupported;
}

}  // namespace mla_kv
