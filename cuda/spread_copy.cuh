// spread_copy.cuh — the small-n copy: one block a row, one vector a thread (MLA_KV_PATH_SPREAD).
#pragma once

#include "common.cuh"

namespace mla_kv {

// Not built yet: the kernels for the sizes of MLA_KV_SPECIALIZED_ROWS come here.
inline cudaError_t SetKvBufferSpread(const SetKvBufferParams&, int /*loc_bytes*/, int /*rows*/, bool /*pdl*/,
                                     cudaStream_t) {
  return cudaErrorNotSupported;
}

}  // namespace mla_kv
