/*
 * mla_kv.h — the plain-C ABI of libmla_kv.
 *
 * One header, no C++ types, fixed-width integers and raw pointers only, so that bun:ffi, Deno FFI,
 * Python ctypes and C callers all see the same surface.
 *
 * Conventions
 *   - Every function returns an int32_t status (MLA_KV_OK = 0 on success). On failure,
 *     mla_kv_last_error() returns a message for the calling thread that stays valid until that
 *     thread's next call into the library.
 *   - Device pointers, streams, events and graphs are passed as void*. A NULL stream means the
 *     device's legacy default stream.
 *   - Sizes and strides are in bytes unless a name says otherwise.
 *   - No C++ exception and no exit() ever crosses this boundary.
 */
#ifndef MLA_KV_H_
#define MLA_KV_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MLA_KV_API __attribute__((visibility("default")))
#else
#define MLA_KV_API
#endif

/* Bumped whenever a signature or the meaning of an argument changes. The TypeScript side refuses
 * a library whose ABI version differs from the one it was written for. */
#define MLA_KV_ABI_VERSION 3

/* ---- status codes ------------------------------------------------------------------------- */
enum {
  MLA_KV_OK = 0,
  MLA_KV_ERR_INVALID_ARGUMENT = 1, /* a bad pointer, size, stride, option; nothing was launched  */
  MLA_KV_ERR_UNSUPPORTED = 2,      /* valid input, but this path/GPU cannot do it (e.g. TMA < sm90) */
  MLA_KV_ERR_NO_DEVICE = 3,        /* no driver, no GPU, or the device index does not exist      */
  MLA_KV_ERR_CUDA = 4,             /* a CUDA runtime call failed; the message names it           */
  MLA_KV_ERR_OUT_OF_RANGE_LOC = 5  /* mla_kv_check_errors found loc >= capacity in earlier writes */
};

/* ---- write paths -------------------------------------------------------------------------- */
enum {
  MLA_KV_PATH_AUTO = 0,   /* the library's built-in rule (C callers); mod.ts passes an explicit path */
  MLA_KV_PATH_VECTOR = 1, /* register copy, widest aligned vector, every arch from sm_75            */
  MLA_KV_PATH_TMA = 2     /* smem staging + cp.async.bulk store, sm_90+, 16-byte alignment required */
};

/* ---- flags of mla_kv_set_kv_buffer ------------------------------------------------------- */
enum {
  /* Programmatic dependent launch (sm_90+; no effect before): the write may start while the
   * previous kernel on the stream finishes; it waits (griddepcontrol.wait) before its first read
   * and lets its own dependents launch after its last write. Saves most of a launch gap when the
   * kernels around it are launched the same way, e.g. inside a CUDA graph. */
  MLA_KV_FLAG_PDL = 1
};

/* ---- library identity --------------------------------------------------------------------- */
MLA_KV_API int32_t mla_kv_abi_version(void);
/* A string that changes with every build of the library (source hash + build time). */
MLA_KV_API const char* mla_kv_build_id(void);
/* The message of the calling thread's last failed call ("" if none). */
MLA_KV_API const char* mla_kv_last_error(void);

/* ---- devices ------------------------------------------------------------------------------ */
enum {
  MLA_KV_PROP_CC_MAJOR = 0,
  MLA_KV_PROP_CC_MINOR = 1,
  MLA_KV_PROP_SM_COUNT = 2,
  MLA_KV_PROP_L2_BYTES = 3,
  MLA_KV_PROP_SMEM_PER_BLOCK_OPTIN = 4,
  MLA_KV_PROP_TOTAL_MEMORY = 5,
  MLA_KV_PROP_DRIVER_VERSION = 6,  /* e.g. 13000 for CUDA 13.0 */
  MLA_KV_PROP_RUNTIME_VERSION = 7, /* the statically linked cudart's version */
  MLA_KV_PROP_PCI_BUS_ID = 8
};
/* Number of visible CUDA devices; 0 with MLA_KV_OK when there is a driver but no GPU. */
MLA_KV_API int32_t mla_kv_device_count(int32_t* out_count);
MLA_KV_API int32_t mla_kv_device_property(int32_t device, int32_t prop, int64_t* out_value);
/* Writes a NUL-terminated name into buf (truncated to buf_len - 1 bytes). */
MLA_KV_API int32_t mla_kv_device_name(int32_t device, char* buf, int32_t buf_len);

/* ---- memory ------------------------------------------------------------------------------- */
MLA_KV_API int32_t mla_kv_malloc(int32_t device, uint64_t bytes, void** out_ptr);
MLA_KV_API int32_t mla_kv_free(int32_t device, void* ptr);
/* Copies are ordered on `stream`; they synchronise with the host only when `stream` does. Use
 * mla_kv_stream_synchronize afterwards before reading host memory that a copy wrote. */
MLA_KV_API int32_t mla_kv_memcpy_htod(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream);
MLA_KV_API int32_t mla_kv_memcpy_dtoh(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream);
MLA_KV_API int32_t mla_kv_memcpy_dtod(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream);
MLA_KV_API int32_t mla_kv_memset(int32_t device, void* dst, int32_t byte_value, uint64_t bytes, void* stream);

/* ---- streams, events, graphs -------------------------------------------------------------- */
MLA_KV_API int32_t mla_kv_stream_create(int32_t device, void** out_stream);
MLA_KV_API int32_t mla_kv_stream_destroy(int32_t device, void* stream);
MLA_KV_API int32_t mla_kv_stream_synchronize(int32_t device, void* stream);
/* 1 while `stream` is being captured into a graph, else 0. */
MLA_KV_API int32_t mla_kv_stream_is_capturing(int32_t device, void* stream, int32_t* out_capturing);
MLA_KV_API int32_t mla_kv_stream_begin_capture(int32_t device, void* stream);
/* Ends the capture and instantiates it; *out_graph is an executable graph for mla_kv_graph_*. */
MLA_KV_API int32_t mla_kv_stream_end_capture(int32_t device, void* stream, void** out_graph);
MLA_KV_API int32_t mla_kv_graph_launch(int32_t device, void* graph, void* stream);
MLA_KV_API int32_t mla_kv_graph_destroy(int32_t device, void* graph);
MLA_KV_API int32_t mla_kv_event_create(int32_t device, void** out_event);
MLA_KV_API int32_t mla_kv_event_destroy(int32_t device, void* event);
MLA_KV_API int32_t mla_kv_event_record(int32_t device, void* event, void* stream);
/* Waits for `end`, then gives the time between the two events in milliseconds. */
MLA_KV_API int32_t mla_kv_event_elapsed_ms(int32_t device, void* start, void* end, float* out_ms);

/* ---- the write ---------------------------------------------------------------------------- */
/*
 * For every i < n with 0 <= loc[i] < capacity:
 *   cache[loc[i]] bytes [0, nope_bytes)                     = nope[i] bytes [0, nope_bytes)
 *   cache[loc[i]] bytes [nope_bytes, nope_bytes+rope_bytes) = rope[i] bytes [0, rope_bytes)
 * Bytes of a cache row past nope_bytes + rope_bytes are never touched.
 * loc[i] < 0 is padding and skipped, and so is loc[i] == reserved_slot (an engine's padding slot,
 * which must keep its finite contents; pass -1 for none). loc[i] >= capacity is skipped and counted
 * in the device's error word, which mla_kv_check_errors reads.
 *
 *   cache             [capacity, cache_row_stride]   device, row i at cache + i * cache_row_stride
 *   loc               [n] int32 or int64             device, loc_elem_bytes = 4 or 8
 *   nope              [n, nope_row_stride]           device, nope_bytes used per row
 *   rope              [n, rope_row_stride]           device, rope_bytes used per row
 *   reserved_slot     a slot never written, or -1
 *   path              MLA_KV_PATH_*
 *   warps_per_block   1, 2, 4, 8 or 16
 *   rows_per_warp     1, 2 or 4
 *   flags             0 or MLA_KV_FLAG_PDL
 *
 * The copy is byte-exact and dtype-agnostic; the widest vector (16, 8, 4, 2 or 1 bytes) that
 * divides every pointer, stride and size is used. n == 0 launches nothing.
 */
MLA_KV_API int32_t mla_kv_set_kv_buffer(int32_t device, void* stream,
                                        void* cache, int64_t capacity, int64_t cache_row_stride,
                                        const void* loc, int32_t loc_elem_bytes, int64_t n,
                                        const void* nope, int64_t nope_row_stride, int64_t nope_bytes,
                                        const void* rope, int64_t rope_row_stride, int64_t rope_bytes,
                                        int64_t reserved_slot, int32_t path, int32_t warps_per_block,
                                        int32_t rows_per_warp, int32_t flags);

/* ---- the quantizing write ----------------------------------------------------------------- */
/* Cache formats of mla_kv_set_kv_buffer_quantized. */
enum {
  /* [nope x e4m3 | rope x e4m3], 1 byte an element: stored = x / scale, one per-tensor scale. */
  MLA_KV_FORMAT_FP8_E4M3 = 1,
  /* The same with e5m2 elements. */
  MLA_KV_FORMAT_FP8_E5M2 = 2,
  /* DeepSeek sparse-MLA fp8, 656 bytes a row: [512 x e4m3 nope | 4 x fp32 scales, one per
   * 128-element tile of the nope part | 64 x bf16 rope]; scale_t = amax_t / 448 over the tile's
   * finite elements, computed in the write. */
  MLA_KV_FORMAT_FP8_DS_MLA = 3
};
/* Source element types of mla_kv_set_kv_buffer_quantized. */
enum {
  MLA_KV_SOURCE_BF16 = 1,
  MLA_KV_SOURCE_FP16 = 2
};

/*
 * Like mla_kv_set_kv_buffer, but the sources are bf16 or fp16 elements and the cache row receives
 * them converted to `format` in the same kernel:
 *   element  = fp8(x / scale): an IEEE fp32 division, then round to nearest even into the fp8
 *              format (subnormals included), saturated to the largest finite value (also for
 *              +-inf); NaN stays NaN with its sign (0x7F / 0xFF); the sign of zero is kept.
 *   ds_mla   scale_t = amax_t / 448, amax_t the largest |x| over tile t's finite elements (NaN and
 *            +-inf do not count). A tile with amax 0 stores scale 0 and converts as if the scale
 *            were 1. The rope part is bf16: bf16 sources are copied, fp16 rounded to nearest even
 *            (NaN becomes 0x7FC0 with its sign).
 *
 *   source_dtype      MLA_KV_SOURCE_BF16 or MLA_KV_SOURCE_FP16
 *   nope, rope        [n, *_row_stride bytes], 2-byte aligned; *_elems elements used per row
 *                     flat formats: nope_elems a multiple of 16 up to 1024, rope_elems a multiple
 *                     of 2 up to 128, a positive sum
 *                     ds_mla: nope_elems == 512, rope_elems == 64
 *   cache             rows of at least nope_elems + rope_elems bytes (flat) or 656 bytes (ds_mla)
 *   scale             flat formats: the per-tensor scale, finite and > 0; ignored by ds_mla
 *   path              MLA_KV_PATH_TMA needs sm_90+, the cache address and row stride multiples of
 *                     16, and a row size that is one (576 and 656 are); sources may be unaligned
 * Bytes of a cache row past the format's row are never touched.
 */
MLA_KV_API int32_t mla_kv_set_kv_buffer_quantized(int32_t device, void* stream, int32_t format,
                                                  void* cache, int64_t capacity, int64_t cache_row_stride,
                                                  const void* loc, int32_t loc_elem_bytes, int64_t n,
                                                  int32_t source_dtype,
                                                  const void* nope, int64_t nope_row_stride, int64_t nope_elems,
                                                  const void* rope, int64_t rope_row_stride, int64_t rope_elems,
                                                  float scale, int64_t reserved_slot, int32_t path,
                                                  int32_t warps_per_block, int32_t rows_per_warp, int32_t flags);

/* 1 if `device` can run `path` (MLA_KV_PATH_TMA needs sm_90+), else 0. */
MLA_KV_API int32_t mla_kv_path_supported(int32_t device, int32_t path, int32_t* out_supported);

/*
 * Synchronises `device`, then reads and clears its out-of-range error word. Returns
 * MLA_KV_ERR_OUT_OF_RANGE_LOC when earlier writes skipped rows with loc >= capacity, with the
 * number of such rows in *out_count and the smallest offending row index i in *out_first_index
 * (both 0 when clean). Either out pointer may be NULL.
 */
MLA_KV_API int32_t mla_kv_check_errors(int32_t device, int64_t* out_count, int64_t* out_first_index);

#ifdef __cplusplus
}
#endif

#endif /* MLA_KV_H_ */
