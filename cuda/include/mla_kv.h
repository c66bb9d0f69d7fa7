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
 *   - Every argument is checked before anything reaches a kernel or the CUDA runtime; argument
 *     errors (MLA_KV_ERR_INVALID_ARGUMENT) are found before the library looks for a device, so
 *     they are the same on a machine without a GPU.
 *   - No C++ exception and no exit() ever crosses this boundary.
 *   - The calling thread's current CUDA device is the same after a call as before it.
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
#define MLA_KV_ABI_VERSION 4

/* ---- status codes ------------------------------------------------------------------------- */
enum {
  MLA_KV_OK = 0,
  MLA_KV_ERR_INVALID_ARGUMENT = 1, /* a bad pointer, size, stride, option; nothing was launched  */
  MLA_KV_ERR_UNSUPPORTED = 2,      /* valid input, but this path/GPU cannot do it (e.g. TMA < sm90) */
  MLA_KV_ERR_NO_DEVICE = 3,        /* no driver, no GPU, or the device index does not exist      */
  MLA_KV_ERR_CUDA = 4,             /* a CUDA runtime call failed; the message names it           */
  MLA_KV_ERR_OUT_OF_RANGE_LOC = 5  /* mla_kv_check_errors found loc >= capacity in earlier writes */
};

/* ---- write paths (kernel designs) --------------------------------------------------------- */
enum {
  MLA_KV_PATH_AUTO = 0,        /* the library's built-in rule (C callers); mod.ts passes its choice   */
  MLA_KV_PATH_VECTOR = 1,      /* generic register copy: any row, widest aligned vector, sm_75+      */
  MLA_KV_PATH_TMA = 2,         /* smem staging + cp.async.bulk store, sm_90+, 16-byte alignment      */
  MLA_KV_PATH_SPECIALIZED = 3, /* register copy compiled for one row size (MLA_KV_SPECIALIZED_ROWS)  */
  MLA_KV_PATH_SPREAD = 4       /* small-n design: one block a row, one vector a thread; the same sizes */
};

/* Row sizes (bytes a cache row receives) with kernels compiled for them, and the vector width
 * each needs every address, stride and size to be a multiple of: 1152 (bf16 512+64), 1024 (bf16
 * 448+64), 656 (u8 528+128), 584 (V4 token with its scale word), 576 (fp8 512+64). */
#define MLA_KV_SPECIALIZED_ROWS {1152, 1024, 656, 584, 576}

/* ---- flags of the writes ------------------------------------------------------------------ */
enum {
  /* Programmatic dependent launch (sm_90+; no effect before): the write may start while the
   * previous kernel on the stream finishes; it waits (griddepcontrol.wait) before its first read
   * and lets its own dependents launch early (they wait for its completion before they read). */
  MLA_KV_FLAG_PDL = 1
};

/* ---- library identity --------------------------------------------------------------------- */
MLA_KV_API int32_t mla_kv_abi_version(void);
/* "<hash>-<archs>": a hash of the CUDA sources with comments and blank space removed (what
 * changes the machine code), and the architectures built. Equal for every build of equal code. */
MLA_KV_API const char* mla_kv_build_id(void);
/* The message of the calling thread's last failed call ("" if none). */
MLA_KV_API const char* mla_kv_last_error(void);

/* ---- driver and devices ------------------------------------------------------------------- */
/* The installed driver's CUDA version (e.g. 13000), or 0 when no NVIDIA driver is installed.
 * Needs no GPU. */
MLA_KV_API int32_t mla_kv_driver_version(int32_t* out_version);
/* The CUDA runtime version linked into the library (e.g. 13000). Needs no driver. */
MLA_KV_API int32_t mla_kv_runtime_version(int32_t* out_version);

enum {
  MLA_KV_PROP_CC_MAJOR = 0,
  MLA_KV_PROP_CC_MINOR = 1,
  MLA_KV_PROP_SM_COUNT = 2,
  MLA_KV_PROP_L2_BYTES = 3,
  MLA_KV_PROP_SMEM_PER_BLOCK_OPTIN = 4,
  MLA_KV_PROP_TOTAL_MEMORY = 5,
  MLA_KV_PROP_DRIVER_VERSION = 6,  /* e.g. 13000 for CUDA 13.0 */
  MLA_KV_PROP_RUNTIME_VERSION = 7, /* the statically linked cudart's version */
  MLA_KV_PROP_PCI_BUS_ID = 8,
  MLA_KV_PROP_FREE_MEMORY = 9      /* bytes free on the device now (changes; never cached) */
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
/*
 * Out-of-range reporting is per stream: each stream that writes owns an error slot on its device
 * (allocated at its first write, or at mla_kv_stream_create), the kernels of a write count into
 * the slot of the stream they were launched on, and mla_kv_check_errors reads and clears that one
 * slot in a single atomic exchange ordered on the stream. A graph captured from a stream owns a
 * slot of its own; mla_kv_graph_launch moves what a replay counted into the slot of the stream it
 * was launched on, so a replay reports where it ran.
 */
MLA_KV_API int32_t mla_kv_stream_create(int32_t device, void** out_stream);
/* Destroys a stream made by mla_kv_stream_create, and frees its error slot. */
MLA_KV_API int32_t mla_kv_stream_destroy(int32_t device, void* stream);
/* Frees the error slot of a stream the library did not create (the caller keeps the stream).
 * Call it before such a stream is destroyed; a later write on the same handle gets a new slot. */
MLA_KV_API int32_t mla_kv_stream_release(int32_t device, void* stream);
/* Waits for the work on `stream` only. */
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
/* Waits for `end`, then gives the time between the two events in milliseconds. Both must have
 * been recorded. */
MLA_KV_API int32_t mla_kv_event_elapsed_ms(int32_t device, void* start, void* end, float* out_ms);

/* ---- the write ---------------------------------------------------------------------------- */
/*
 * For every i < n with 0 <= loc[i] < capacity and loc[i] != reserved_slot:
 *   cache[loc[i]] bytes [0, nope_bytes)                     = nope[i] bytes [0, nope_bytes)
 *   cache[loc[i]] bytes [nope_bytes, nope_bytes+rope_bytes) = rope[i] bytes [0, rope_bytes)
 * Bytes of a cache row past nope_bytes + rope_bytes are never touched.
 * loc[i] < 0 is padding and skipped, and so is loc[i] == reserved_slot (an engine's padding slot,
 * which must keep its finite contents; pass -1 for none). loc[i] >= capacity is skipped and counted
 * in the error slot of `stream` (see mla_kv_check_errors). Duplicate loc values are not refused:
 * every such row is written, concurrently, so the slot ends with an undefined mixture of their
 * bytes (in pieces of the vector width). Sources and cache must not overlap.
 *
 *   cache             [capacity, cache_row_stride]   device, row i at cache + i * cache_row_stride
 *   loc               [n] int32 or int64             device, loc_elem_bytes = 4 or 8, aligned to it
 *   nope              [n, nope_row_stride]           device, nope_bytes used per row
 *   rope              [n, rope_row_stride]           device, rope_bytes used per row; may be NULL
 *                                                    when rope_bytes is 0 (and nope when nope_bytes is)
 *   reserved_slot     a slot below capacity that is never written, or -1
 *   path              MLA_KV_PATH_*
 *   warps_per_block   1, 2, 4, 8 or 16; for MLA_KV_PATH_SPREAD the warps one row needs
 *                     (ceil(row vectors / 32)), which the library also accepts as 0
 *   rows_per_warp     1, 2 or 4 (for MLA_KV_PATH_SPREAD: rows a block)
 *   flags             0 or MLA_KV_FLAG_PDL
 * The sums and products of the sizes (capacity * cache_row_stride, n * the row strides,
 * nope_bytes + rope_bytes) must fit in int64; anything else is refused. MLA_KV_PATH_AUTO with
 * warps and rows 0 applies the built-in rule.
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
  /* DeepSeek V3.2 sparse-MLA fp8, 656 bytes a row: [512 x e4m3 nope | 4 x fp32 scales, one per
   * 128-element tile of the nope part | 64 x bf16 rope]. Scales by scale_rule (POW2 or AMAX). */
  MLA_KV_FORMAT_FP8_DS_MLA = 3,
  /* DeepSeek V4, paged, 584 bytes a token: a page of page_size tokens holds all its token rows
   * [448 x e4m3 | 64 x bf16] (576 B each), then all its tokens' scale words [7 x ue8m0, one per
   * 64-element tile of the nope part | 1 pad byte] (8 B each); the page is padded to a multiple of
   * 576 B. Scales by the POW2 rule, stored as their e8m0 exponent byte. Sources 448 + 64. */
  MLA_KV_FORMAT_FP8_DS_V4 = 4,
  /* The sparse-attention indexer's K cache, paged, 132 bytes a token: a page holds all its tokens'
   * 128 e4m3 values, then all their fp32 scales (4 B each). Sources 128 + 0 (rope may be NULL).
   * Scales by scale_rule (AMAX: max(amax, 1e-4) / 448, or UE8M0: that rounded up to a power of 2). */
  MLA_KV_FORMAT_FP8_INDEXER = 5
};
/* Scale rules of the tile-scaled formats (0 takes the format's default). amax is the tile's
 * largest |x| over its finite elements; divisions are fp32, 1e-4 is the fp32 constant. */
enum {
  MLA_KV_SCALE_DEFAULT = 0,
  /* ds_mla, ds_v4: 2^ceil(log2(max(amax / 448, 1e-4))), a power of two (ds_mla's default). An
   * all-zero tile, and any tile with amax < 0.0448, gets the floor 2^-13. Exact in fp32, bf16 and
   * e8m0, so every reader reads it back unchanged. */
  MLA_KV_SCALE_POW2 = 1,
  /* ds_mla: amax / 448; an all-zero tile stores 0 and its elements are converted as if the scale
   * were 1. indexer (its default): max(amax, 1e-4) / 448, never 0. */
  MLA_KV_SCALE_AMAX = 2,
  /* indexer: max(amax, 1e-4) / 448 rounded up to a power of two (at least 2^-22). */
  MLA_KV_SCALE_UE8M0 = 3
};
/* Source element types of mla_kv_set_kv_buffer_quantized. */
enum {
  MLA_KV_SOURCE_BF16 = 1,
  MLA_KV_SOURCE_FP16 = 2
};

/*
 * Like mla_kv_set_kv_buffer, but the sources are bf16 or fp16 elements and the cache receives
 * them converted to `format` in the same kernel:
 *   element  = fp8(x / scale): an IEEE fp32 division, then round to nearest even into the fp8
 *              format (fp8 subnormals included; source subnormals are exact in fp32), saturated
 *              to the largest finite value (448 e4m3, 57344 e5m2) for +-inf and anything past
 *              it; NaN stays NaN with its sign (0x7F / 0xFF, both formats); -0 and negatives that
 *              round to zero give 0x80. No fp8 infinity is ever written.
 *   tiles    amax_t is the largest |x| over tile t's finite elements (NaN and +-inf do not count);
 *            the scale follows `scale_rule` (see MLA_KV_SCALE_*). A power-of-two scale divides
 *            exactly (as a multiplication by its reciprocal). Rope parts stored as bf16: bf16
 *            sources copied bit for bit, fp16 rounded to nearest even (NaN becomes 0x7FC0 with
 *            its sign).
 *
 *   source_dtype      MLA_KV_SOURCE_BF16 or MLA_KV_SOURCE_FP16
 *   nope, rope        [n, *_row_stride bytes], 2-byte aligned; *_elems elements used per row
 *                     flat formats: nope_elems a multiple of 16 up to 1024, rope_elems a multiple
 *                     of 2 up to 128, a positive sum
 *                     ds_mla: 512 + 64; ds_v4: 448 + 64; indexer: 128 + 0
 *   cache             row formats (flat, ds_mla): [capacity, cache_row_stride], rows of at least
 *                     the format's row bytes; paged formats (ds_v4, indexer): [capacity /
 *                     page_size, cache_row_stride] pages, cache_row_stride at least the page's
 *                     bytes, slot s at page s / page_size, token s % page_size
 *   page_size         tokens a page for the paged formats (>= 1, dividing capacity); 0 otherwise
 *   scale             flat formats: the per-tensor scale, finite and > 0; ignored otherwise
 *   scale_rule        MLA_KV_SCALE_*, one the format accepts
 *   path              MLA_KV_PATH_VECTOR or _TMA (TMA: row formats only, sm_90+, the cache address
 *                     and row stride multiples of 16 and a row size that is one: 576 and 656 are;
 *                     a paged format on TMA is MLA_KV_ERR_UNSUPPORTED; AUTO takes the vector path)
 * Bytes of a cache row or page that the format does not define (pad bytes, a page's padding) are
 * never touched.
 */
MLA_KV_API int32_t mla_kv_set_kv_buffer_quantized(int32_t device, void* stream, int32_t format, int32_t scale_rule,
                                                  void* cache, int64_t capacity, int64_t cache_row_stride,
                                                  int64_t page_size,
                                                  const void* loc, int32_t loc_elem_bytes, int64_t n,
                                                  int32_t source_dtype,
                                                  const void* nope, int64_t nope_row_stride, int64_t nope_elems,
                                                  const void* rope, int64_t rope_row_stride, int64_t rope_elems,
                                                  float scale, int64_t reserved_slot, int32_t path,
                                                  int32_t warps_per_block, int32_t rows_per_warp, int32_t flags);

/* 1 if `device` can run `path` for some write (TMA needs sm_90+), else 0. */
MLA_KV_API int32_t mla_kv_path_supported(int32_t device, int32_t path, int32_t* out_supported);

/*
 * Waits for `stream`, then reads and clears its error slot (one atomic exchange, ordered on the
 * stream after its earlier work). Returns MLA_KV_ERR_OUT_OF_RANGE_LOC when writes on it skipped
 * rows with loc >= capacity since the last check, with the number of such rows in *out_count and
 * the smallest offending row index i in *out_first_index (both 0 when clean). Either out pointer
 * may be NULL. Other streams' slots are not touched.
 */
MLA_KV_API int32_t mla_kv_check_errors(int32_t device, void* stream, int64_t* out_count, int64_t* out_first_index);

#ifdef __cplusplus
}
#endif

#endif /* MLA_KV_H_ */
