/*
 * checks.h — the argument checks of the two writes of mla_kv.h and the rule that says which
 * write path can run a write, in plain C99 with static inline functions only.
 *
 * One copy of these rules serves two compilers: nvcc builds them into the library (capi.cu), and
 * cc builds them into the host fixture (tests/ffi/fixtures/host_mla_kv.c), so a test that drives
 * the fixture checks the very code the library runs. Each check writes its refusal into a buffer
 * of the caller's and returns a status; nothing here touches a device, so the library can refuse
 * bad arguments before it looks for one.
 *
 * Every sum and product of caller-given sizes goes through __builtin_add_overflow and
 * __builtin_mul_overflow: a size near INT64_MAX must be refused, never wrapped into a small one.
 */
#ifndef MLA_KV_CHECKS_H_
#define MLA_KV_CHECKS_H_

#include <float.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "include/mla_kv.h"

#if defined(__CUDACC__)
#define MLA_KV_HOST_DEVICE __host__ __device__
#else
#define MLA_KV_HOST_DEVICE
#endif

/* ---- constants of the paths ------------------------------------------------------------------ */

/* The TMA path stages each row in one of two shared-memory buffers a warp (one being read by the
 * copy engine, one being filled); buffers start on 128-byte boundaries (16 is the architectural
 * minimum for bulk copies; 128 keeps each buffer on its own lines). */
#define MLA_KV_TMA_STAGES 2
#define MLA_KV_TMA_STAGE_ALIGN 128

/* Below this many rows the built-in rule (MLA_KV_PATH_AUTO) keeps a register path with 4 warps;
 * from here on it takes TMA where it can, with 8 warps. */
#define MLA_KV_AUTO_LARGE_N 768

/* Bytes of one TMA stage for a row of row_bytes (row_bytes checked to be small by the caller). */
MLA_KV_HOST_DEVICE static inline int64_t mla_kv_tma_stage_bytes(int64_t row_bytes) {
  return (row_bytes + MLA_KV_TMA_STAGE_ALIGN - 1) / MLA_KV_TMA_STAGE_ALIGN * MLA_KV_TMA_STAGE_ALIGN;
}

/* Dynamic shared memory a TMA block of `warps` warps stages. */
MLA_KV_HOST_DEVICE static inline int64_t mla_kv_tma_shared_bytes(int32_t warps, int64_t row_bytes) {
  return (int64_t)warps * MLA_KV_TMA_STAGES * mla_kv_tma_stage_bytes(row_bytes);
}

/* The largest power of two up to 16 dividing `bits` (an OR of every value that must be divided). */
static inline int mla_kv_alignment_of(uint64_t bits) {
  int v;
  for (v = 16; v > 1; v >>= 1) {
    if ((bits & (uint64_t)(v - 1)) == 0) return v;
  }
  return 1;
}

/* The vector width a specialized kernel of a row size uses (the widest one dividing the row), or
 * 0 when the size is not one of MLA_KV_SPECIALIZED_ROWS. */
static inline int mla_kv_specialized_vector_bytes(int64_t row_bytes) {
  static const int64_t rows[] = MLA_KV_SPECIALIZED_ROWS;
  size_t k;
  for (k = 0; k < sizeof rows / sizeof rows[0]; ++k) {
    if (rows[k] == row_bytes) return mla_kv_alignment_of((uint64_t)row_bytes);
  }
  return 0;
}

/* MLA_KV_SPECIALIZED_ROWS as words ("1152, 1024, 656, 584 and 576"), for messages. */
static inline void mla_kv_specialized_rows_text(char* out, size_t out_len) {
  static const int64_t rows[] = MLA_KV_SPECIALIZED_ROWS;
  const size_t count = sizeof rows / sizeof rows[0];
  size_t k, used = 0;
  out[0] = '\0';
  for (k = 0; k < count && used < out_len; ++k) {
    const char* separator = k == 0 ? "" : k + 1 == count ? " and " : ", ";
    const int written = snprintf(out + used, out_len - used, "%s%lld", separator, (long long)rows[k]);
    if (written < 0) return;
    used += (size_t)written;
  }
}

/* The warps a MLA_KV_PATH_SPREAD block needs for one row, one vector a thread
 * (ceil(row vectors / 32)), or 0 when the size is not specialized. */
static inline int32_t mla_kv_spread_warps(int64_t row_bytes) {
  const int v = mla_kv_specialized_vector_bytes(row_bytes);
  if (v == 0) return 0;
  return (int32_t)((row_bytes / v + 31) / 32);
}

/* ---- the quantizing formats -------------------------------------------------------------------- */

#define MLA_KV_FLAT_MAX_NOPE_ELEMS 1024
#define MLA_KV_FLAT_MAX_ROPE_ELEMS 128
#define MLA_KV_DS_MLA_ROW_BYTES 656   /* 512 e4m3 | 4 fp32 scales | 64 bf16 */
#define MLA_KV_DS_V4_TOKEN_BYTES 576  /* 448 e4m3 | 64 bf16 */
#define MLA_KV_DS_V4_SCALE_BYTES 8    /* 7 ue8m0 | 1 pad */
#define MLA_KV_DS_V4_PAGE_ALIGN 576
#define MLA_KV_INDEXER_TOKEN_BYTES 132 /* 128 e4m3 | 1 fp32 scale */

static inline int mla_kv_format_known(int32_t format) {
  return format >= MLA_KV_FORMAT_FP8_E4M3 && format <= MLA_KV_FORMAT_FP8_INDEXER;
}

static inline int mla_kv_format_is_flat(int32_t format) {
  return format == MLA_KV_FORMAT_FP8_E4M3 || format == MLA_KV_FORMAT_FP8_E5M2;
}

/* Paged formats keep a page of page_size tokens in one cache row. */
static inline int mla_kv_format_is_paged(int32_t format) {
  return format == MLA_KV_FORMAT_FP8_DS_V4 || format == MLA_KV_FORMAT_FP8_INDEXER;
}

/* Bytes a cache row (row formats) or a token (paged formats) of `format` receives. */
static inline int64_t mla_kv_quantized_row_bytes(int32_t format, int64_t nope_elems, int64_t rope_elems) {
  switch (format) {
    case MLA_KV_FORMAT_FP8_DS_MLA: return MLA_KV_DS_MLA_ROW_BYTES;
    case MLA_KV_FORMAT_FP8_DS_V4: return MLA_KV_DS_V4_TOKEN_BYTES + MLA_KV_DS_V4_SCALE_BYTES;
    case MLA_KV_FORMAT_FP8_INDEXER: return MLA_KV_INDEXER_TOKEN_BYTES;
    default: return nope_elems + rope_elems;
  }
}

/* Bytes of a page of `page_size` tokens of a paged format into *out; 0 when that overflows. */
static inline int mla_kv_quantized_page_bytes(int32_t format, int64_t page_size, int64_t* out) {
  int64_t bytes = 0;
  if (__builtin_mul_overflow(page_size, mla_kv_quantized_row_bytes(format, 0, 0), &bytes)) return 0;
  if (format == MLA_KV_FORMAT_FP8_DS_V4) {
    int64_t padded = 0;
    if (__builtin_add_overflow(bytes, (int64_t)(MLA_KV_DS_V4_PAGE_ALIGN - 1), &padded)) return 0;
    bytes = padded / MLA_KV_DS_V4_PAGE_ALIGN * MLA_KV_DS_V4_PAGE_ALIGN;
  }
  *out = bytes;
  return 1;
}

static inline const char* mla_kv_format_name(int32_t format) {
  switch (format) {
    case MLA_KV_FORMAT_FP8_E4M3: return "fp8_e4m3";
    case MLA_KV_FORMAT_FP8_E5M2: return "fp8_e5m2";
    case MLA_KV_FORMAT_FP8_DS_MLA: return "fp8_ds_mla";
    case MLA_KV_FORMAT_FP8_DS_V4: return "fp8_ds_v4";
    case MLA_KV_FORMAT_FP8_INDEXER: return "fp8_indexer";
    default: return "an unknown format";
  }
}

/* Whether `format` accepts `rule`. */
static inline int mla_kv_scale_rule_accepted(int32_t format, int32_t rule) {
  if (rule == MLA_KV_SCALE_DEFAULT) return 1;
  switch (format) {
    case MLA_KV_FORMAT_FP8_DS_MLA: return rule == MLA_KV_SCALE_POW2 || rule == MLA_KV_SCALE_AMAX;
    case MLA_KV_FORMAT_FP8_DS_V4: return rule == MLA_KV_SCALE_POW2;
    case MLA_KV_FORMAT_FP8_INDEXER: return rule == MLA_KV_SCALE_AMAX || rule == MLA_KV_SCALE_UE8M0;
    default: return 0;
  }
}

/* The rule a write of `format` applies: `rule`, or for DEFAULT the format's own (flat formats
 * have a per-tensor scale and no rule: DEFAULT stays). */
static inline int32_t mla_kv_resolved_scale_rule(int32_t format, int32_t rule) {
  if (rule != MLA_KV_SCALE_DEFAULT) return rule;
  switch (format) {
    case MLA_KV_FORMAT_FP8_DS_MLA:
    case MLA_KV_FORMAT_FP8_DS_V4: return MLA_KV_SCALE_POW2;
    case MLA_KV_FORMAT_FP8_INDEXER: return MLA_KV_SCALE_AMAX;
    default: return MLA_KV_SCALE_DEFAULT;
  }
}

/* ---- the arguments of the writes ----------------------------------------------------------------- */

/* The arguments of mla_kv_set_kv_buffer, as the header names them (device and stream aside). */
typedef struct {
  void* cache;
  int64_t capacity, cache_row_stride;
  const void* loc;
  int32_t loc_elem_bytes;
  int64_t n;
  const void* nope;
  int64_t nope_row_stride, nope_bytes;
  const void* rope;
  int64_t rope_row_stride, rope_bytes;
  int64_t reserved_slot;
  int32_t path, warps_per_block, rows_per_warp, flags;
} MlaKvCopyArgs;

/* The arguments of mla_kv_set_kv_buffer_quantized, as the header names them. */
typedef struct {
  int32_t format, scale_rule;
  void* cache;
  int64_t capacity, cache_row_stride, page_size;
  const void* loc;
  int32_t loc_elem_bytes;
  int64_t n;
  int32_t source_dtype;
  const void* nope;
  int64_t nope_row_stride, nope_elems;
  const void* rope;
  int64_t rope_row_stride, rope_elems;
  float scale;
  int64_t reserved_slot;
  int32_t path, warps_per_block, rows_per_warp, flags;
} MlaKvQuantizedArgs;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static inline int32_t mla_kv_refuse(int32_t status, char* msg, size_t msg_len, const char* fmt, ...) {
  if (msg != NULL && msg_len > 0) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(msg, msg_len, fmt, args);
    va_end(args);
  }
  return status;
}

#define MLA_KV_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) return mla_kv_refuse(MLA_KV_ERR_INVALID_ARGUMENT, msg, msg_len, __VA_ARGS__); \
  } while (0)

#define MLA_KV_CHECKED(call)                 \
  do {                                       \
    const int32_t status_ = (call);          \
    if (status_ != MLA_KV_OK) return status_; \
  } while (0)

static inline int mla_kv_is_power_of_two_in(int32_t x, int32_t lo, int32_t hi) {
  return x >= lo && x <= hi && (x & (x - 1)) == 0;
}

static inline int mla_kv_path_known(int32_t path) {
  return path >= MLA_KV_PATH_AUTO && path <= MLA_KV_PATH_SPREAD;
}

/* rows * row_stride bytes from ptr must fit in int64 and in the address space; `what` names the
 * rows and `stride_name` the stride, for the message. A NULL part (allowed only with 0 bytes a
 * row, checked before) reads nothing and has no extent. */
static inline int32_t mla_kv_check_extent(const void* ptr, int64_t rows, int64_t row_stride, const char* rows_name,
                                          const char* stride_name, char* msg, size_t msg_len) {
  int64_t extent = 0;
  uintptr_t end = 0;
  if (ptr == NULL) return MLA_KV_OK;
  MLA_KV_CHECK(!__builtin_mul_overflow(rows, row_stride, &extent), "%s = %lld times %s = %lld overflows int64",
               rows_name, (long long)rows, stride_name, (long long)row_stride);
  MLA_KV_CHECK(!__builtin_add_overflow((uintptr_t)ptr, (uintptr_t)extent, &end),
               "%s * %s = %lld bytes from 0x%llx run past the end of the address space", rows_name, stride_name,
               (long long)extent, (unsigned long long)(uintptr_t)ptr);
  return MLA_KV_OK;
}

/* What both writes check the same way: n, path, flags, loc, the cache pointer, capacity. */
static inline int32_t mla_kv_check_common(int64_t n, int32_t path, int32_t flags, const void* loc,
                                          int32_t loc_elem_bytes, const void* cache, int64_t capacity, char* msg,
                                          size_t msg_len) {
  MLA_KV_CHECK(n >= 0, "n = %lld must be >= 0", (long long)n);
  MLA_KV_CHECK(mla_kv_path_known(path), "path = %d is not one of MLA_KV_PATH_AUTO/VECTOR/TMA/SPECIALIZED/SPREAD", path);
  MLA_KV_CHECK((flags & ~MLA_KV_FLAG_PDL) == 0, "flags = %d has bits other than MLA_KV_FLAG_PDL", flags);
  MLA_KV_CHECK(loc_elem_bytes == 4 || loc_elem_bytes == 8, "loc_elem_bytes = %d must be 4 or 8", loc_elem_bytes);
  MLA_KV_CHECK(loc != NULL, "loc is NULL");
  MLA_KV_CHECK((uintptr_t)loc % (uintptr_t)loc_elem_bytes == 0, "loc = 0x%llx is not aligned to its %d-byte elements",
               (unsigned long long)(uintptr_t)loc, loc_elem_bytes);
  MLA_KV_CHECKED(mla_kv_check_extent(loc, n, loc_elem_bytes, "n", "loc_elem_bytes", msg, msg_len));
  MLA_KV_CHECK(cache != NULL, "cache is NULL");
  MLA_KV_CHECK(capacity > 0, "capacity = %lld must be > 0", (long long)capacity);
  return MLA_KV_OK;
}

/* The slot never written: -1 for none, else a slot of the cache. */
static inline int32_t mla_kv_check_reserved_slot(int64_t reserved_slot, int64_t capacity, char* msg, size_t msg_len) {
  MLA_KV_CHECK(reserved_slot == -1 || (reserved_slot >= 0 && reserved_slot < capacity),
               "reserved_slot = %lld must be -1 (none) or a slot below capacity = %lld", (long long)reserved_slot,
               (long long)capacity);
  return MLA_KV_OK;
}

/* The launch shape: warps and rows, where row_bytes (bytes a cache row receives) decides what
 * MLA_KV_PATH_SPREAD needs. */
static inline int32_t mla_kv_check_launch_shape(int32_t path, int32_t warps, int32_t rows, int64_t row_bytes,
                                                char* msg, size_t msg_len) {
  if (path == MLA_KV_PATH_SPREAD) {
    const int32_t needed = mla_kv_spread_warps(row_bytes);
    if (needed > 0) {
      MLA_KV_CHECK(warps == 0 || warps == needed,
                   "warps_per_block = %d: MLA_KV_PATH_SPREAD with %lld-byte rows needs %d warps (ceil(row vectors / 32)), "
                   "or 0",
                   warps, (long long)row_bytes, needed);
    } else {
      MLA_KV_CHECK(warps == 0 || mla_kv_is_power_of_two_in(warps, 1, 16),
                   "warps_per_block = %d must be 1, 2, 4, 8 or 16, or 0", warps);
    }
  } else {
    MLA_KV_CHECK((path == MLA_KV_PATH_AUTO && warps == 0) || mla_kv_is_power_of_two_in(warps, 1, 16),
                 "warps_per_block = %d must be 1, 2, 4, 8 or 16 (or 0 with MLA_KV_PATH_AUTO)", warps);
  }
  MLA_KV_CHECK((path == MLA_KV_PATH_AUTO && rows == 0) || mla_kv_is_power_of_two_in(rows, 1, 4),
               "rows_per_warp = %d must be 1, 2 or 4 (or 0 with MLA_KV_PATH_AUTO)", rows);
  return MLA_KV_OK;
}

/* Every argument check of mla_kv_set_kv_buffer (see mla_kv.h). */
static inline int32_t mla_kv_check_copy(const MlaKvCopyArgs* a, char* msg, size_t msg_len) {
  int64_t row_bytes = 0;
  MLA_KV_CHECKED(mla_kv_check_common(a->n, a->path, a->flags, a->loc, a->loc_elem_bytes, a->cache, a->capacity, msg,
                                     msg_len));
  MLA_KV_CHECK(a->nope_bytes >= 0 && a->rope_bytes >= 0, "nope_bytes = %lld and rope_bytes = %lld must be >= 0",
               (long long)a->nope_bytes, (long long)a->rope_bytes);
  MLA_KV_CHECK(!__builtin_add_overflow(a->nope_bytes, a->rope_bytes, &row_bytes),
               "nope_bytes + rope_bytes = %lld + %lld overflows int64", (long long)a->nope_bytes,
               (long long)a->rope_bytes);
  MLA_KV_CHECK(row_bytes > 0, "nope_bytes + rope_bytes must be > 0");
  MLA_KV_CHECK(a->nope != NULL || a->nope_bytes == 0, "nope is NULL but nope_bytes = %lld", (long long)a->nope_bytes);
  MLA_KV_CHECK(a->rope != NULL || a->rope_bytes == 0, "rope is NULL but rope_bytes = %lld", (long long)a->rope_bytes);
  MLA_KV_CHECK(a->nope_row_stride >= a->nope_bytes, "nope_row_stride = %lld is smaller than nope_bytes = %lld",
               (long long)a->nope_row_stride, (long long)a->nope_bytes);
  MLA_KV_CHECK(a->rope_row_stride >= a->rope_bytes, "rope_row_stride = %lld is smaller than rope_bytes = %lld",
               (long long)a->rope_row_stride, (long long)a->rope_bytes);
  MLA_KV_CHECK(a->cache_row_stride >= row_bytes, "cache_row_stride = %lld is smaller than nope_bytes + rope_bytes = %lld",
               (long long)a->cache_row_stride, (long long)row_bytes);
  MLA_KV_CHECKED(mla_kv_check_extent(a->cache, a->capacity, a->cache_row_stride, "capacity", "cache_row_stride", msg,
                                     msg_len));
  MLA_KV_CHECKED(mla_kv_check_extent(a->nope, a->n, a->nope_row_stride, "n", "nope_row_stride", msg, msg_len));
  MLA_KV_CHECKED(mla_kv_check_extent(a->rope, a->n, a->rope_row_stride, "n", "rope_row_stride", msg, msg_len));
  MLA_KV_CHECKED(mla_kv_check_reserved_slot(a->reserved_slot, a->capacity, msg, msg_len));
  return mla_kv_check_launch_shape(a->path, a->warps_per_block, a->rows_per_warp, row_bytes, msg, msg_len);
}

/* Bytes a cache row of a copy receives (valid after mla_kv_check_copy passed). */
static inline int64_t mla_kv_copy_row_bytes(const MlaKvCopyArgs* a) { return a->nope_bytes + a->rope_bytes; }

/* The alignment of a copy: what divides every pointer, stride and size it reads or writes. A NULL
 * part has 0 bytes and reads nothing, so neither its pointer nor its stride counts. */
static inline int mla_kv_copy_alignment(const MlaKvCopyArgs* a) {
  uint64_t bits = (uint64_t)(uintptr_t)a->cache | (uint64_t)a->cache_row_stride | (uint64_t)a->nope_bytes |
                  (uint64_t)a->rope_bytes;
  if (a->nope != NULL) bits |= (uint64_t)(uintptr_t)a->nope | (uint64_t)a->nope_row_stride;
  if (a->rope != NULL) bits |= (uint64_t)(uintptr_t)a->rope | (uint64_t)a->rope_row_stride;
  return mla_kv_alignment_of(bits);
}

/* The shape of each format's sources. */
static inline int32_t mla_kv_check_quantized_shape(int32_t format, int64_t nope_elems, int64_t rope_elems, char* msg,
                                                   size_t msg_len) {
  switch (format) {
    case MLA_KV_FORMAT_FP8_DS_MLA:
      MLA_KV_CHECK(nope_elems == 512 && rope_elems == 64,
                   "the ds_mla format has 512 nope and 64 rope elements a row; got %lld and %lld", (long long)nope_elems,
                   (long long)rope_elems);
      return MLA_KV_OK;
    case MLA_KV_FORMAT_FP8_DS_V4:
      MLA_KV_CHECK(nope_elems == 448 && rope_elems == 64,
                   "the ds_v4 format has 448 nope and 64 rope elements a token; got %lld and %lld",
                   (long long)nope_elems, (long long)rope_elems);
      return MLA_KV_OK;
    case MLA_KV_FORMAT_FP8_INDEXER:
      MLA_KV_CHECK(nope_elems == 128 && rope_elems == 0,
                   "the indexer format has 128 elements a token and no rope part; got %lld and %lld",
                   (long long)nope_elems, (long long)rope_elems);
      return MLA_KV_OK;
    default:
      MLA_KV_CHECK(nope_elems >= 0 && nope_elems % 16 == 0 && nope_elems <= MLA_KV_FLAT_MAX_NOPE_ELEMS,
                   "nope_elems = %lld must be a multiple of 16 in 0..%d", (long long)nope_elems,
                   MLA_KV_FLAT_MAX_NOPE_ELEMS);
      MLA_KV_CHECK(rope_elems >= 0 && rope_elems % 2 == 0 && rope_elems <= MLA_KV_FLAT_MAX_ROPE_ELEMS,
                   "rope_elems = %lld must be a multiple of 2 in 0..%d", (long long)rope_elems,
                   MLA_KV_FLAT_MAX_ROPE_ELEMS);
      MLA_KV_CHECK(nope_elems + rope_elems > 0, "nope_elems + rope_elems must be > 0");
      return MLA_KV_OK;
  }
}

/* Every argument check of mla_kv_set_kv_buffer_quantized (see mla_kv.h). */
static inline int32_t mla_kv_check_quantized(const MlaKvQuantizedArgs* a, char* msg, size_t msg_len) {
  int paged;
  int64_t cache_rows, needed_stride;
  MLA_KV_CHECKED(mla_kv_check_common(a->n, a->path, a->flags, a->loc, a->loc_elem_bytes, a->cache, a->capacity, msg,
                                     msg_len));
  MLA_KV_CHECK(mla_kv_format_known(a->format), "format = %d is not one of MLA_KV_FORMAT_FP8_E4M3/E5M2/DS_MLA/DS_V4/INDEXER",
               a->format);
  MLA_KV_CHECK(a->source_dtype == MLA_KV_SOURCE_BF16 || a->source_dtype == MLA_KV_SOURCE_FP16,
               "source_dtype = %d is not MLA_KV_SOURCE_BF16 or MLA_KV_SOURCE_FP16", a->source_dtype);
  MLA_KV_CHECK(mla_kv_scale_rule_accepted(a->format, a->scale_rule), "scale_rule = %d is not one the %s format accepts",
               a->scale_rule, mla_kv_format_name(a->format));
  MLA_KV_CHECKED(mla_kv_check_quantized_shape(a->format, a->nope_elems, a->rope_elems, msg, msg_len));
  MLA_KV_CHECK(a->nope != NULL || a->nope_elems == 0, "nope is NULL but nope_elems = %lld", (long long)a->nope_elems);
  MLA_KV_CHECK(a->rope != NULL || a->rope_elems == 0, "rope is NULL but rope_elems = %lld", (long long)a->rope_elems);
  MLA_KV_CHECK(a->nope == NULL || ((uintptr_t)a->nope % 2 == 0 && a->nope_row_stride % 2 == 0),
               "nope = 0x%llx and nope_row_stride = %lld must be multiples of the 2-byte source elements",
               (unsigned long long)(uintptr_t)a->nope, (long long)a->nope_row_stride);
  MLA_KV_CHECK(a->rope == NULL || ((uintptr_t)a->rope % 2 == 0 && a->rope_row_stride % 2 == 0),
               "rope = 0x%llx and rope_row_stride = %lld must be multiples of the 2-byte source elements",
               (unsigned long long)(uintptr_t)a->rope, (long long)a->rope_row_stride);
  /* Element counts are at most 1024 here, so twice them cannot overflow. */
  MLA_KV_CHECK(a->nope_row_stride >= 2 * a->nope_elems,
               "nope_row_stride = %lld bytes is smaller than a row of %lld 2-byte elements",
               (long long)a->nope_row_stride, (long long)a->nope_elems);
  MLA_KV_CHECK(a->rope_row_stride >= 2 * a->rope_elems,
               "rope_row_stride = %lld bytes is smaller than a row of %lld 2-byte elements",
               (long long)a->rope_row_stride, (long long)a->rope_elems);
  paged = mla_kv_format_is_paged(a->format);
  if (paged) {
    MLA_KV_CHECK(a->page_size >= 1 && a->capacity % a->page_size == 0,
                 "page_size = %lld must be >= 1 and divide capacity = %lld for a paged format",
                 (long long)a->page_size, (long long)a->capacity);
    MLA_KV_CHECK(mla_kv_quantized_page_bytes(a->format, a->page_size, &needed_stride),
                 "a page of page_size = %lld tokens overflows int64", (long long)a->page_size);
    cache_rows = a->capacity / a->page_size;
    MLA_KV_CHECK(a->cache_row_stride >= needed_stride,
                 "cache_row_stride = %lld is smaller than a page of %lld tokens (%lld bytes)",
                 (long long)a->cache_row_stride, (long long)a->page_size, (long long)needed_stride);
  } else {
    MLA_KV_CHECK(a->page_size == 0, "page_size = %lld must be 0 for a row format", (long long)a->page_size);
    needed_stride = mla_kv_quantized_row_bytes(a->format, a->nope_elems, a->rope_elems);
    cache_rows = a->capacity;
    MLA_KV_CHECK(a->cache_row_stride >= needed_stride,
                 "cache_row_stride = %lld is smaller than the format's row of %lld bytes", (long long)a->cache_row_stride,
                 (long long)needed_stride);
  }
  MLA_KV_CHECKED(mla_kv_check_extent(a->cache, cache_rows, a->cache_row_stride, paged ? "capacity / page_size" : "capacity",
                                     "cache_row_stride", msg, msg_len));
  MLA_KV_CHECKED(mla_kv_check_extent(a->nope, a->n, a->nope_row_stride, "n", "nope_row_stride", msg, msg_len));
  MLA_KV_CHECKED(mla_kv_check_extent(a->rope, a->n, a->rope_row_stride, "n", "rope_row_stride", msg, msg_len));
  /* NaN fails both comparisons; FLT_MAX bounds the finite values. */
  MLA_KV_CHECK(!mla_kv_format_is_flat(a->format) || (a->scale > 0.0f && a->scale <= FLT_MAX),
               "scale = %g must be finite and > 0", (double)a->scale);
  MLA_KV_CHECKED(mla_kv_check_reserved_slot(a->reserved_slot, a->capacity, msg, msg_len));
  return mla_kv_check_launch_shape(a->path, a->warps_per_block, a->rows_per_warp,
                                   mla_kv_quantized_row_bytes(a->format, a->nope_elems, a->rope_elems), msg, msg_len);
}

/* The alignment the quantizing TMA path needs: the cache address, its row stride and the row. */
static inline int mla_kv_quantized_tma_alignment(const MlaKvQuantizedArgs* a) {
  return mla_kv_alignment_of((uint64_t)(uintptr_t)a->cache | (uint64_t)a->cache_row_stride |
                             (uint64_t)mla_kv_quantized_row_bytes(a->format, a->nope_elems, a->rope_elems));
}

/* ---- which path can run a write ------------------------------------------------------------------ */

/* What decides whether a path can run a write of valid arguments. */
typedef struct {
  int copy;           /* 1 for mla_kv_set_kv_buffer, 0 for the quantizing write */
  int paged;          /* a paged cache format (quantizing writes only) */
  int64_t row_bytes;  /* bytes a cache row (or token) receives */
  int alignment;      /* mla_kv_copy_alignment or mla_kv_quantized_tma_alignment */
  int cc_major;       /* the device's compute capability */
  int64_t smem_optin; /* the device's opt-in shared memory a block */
} MlaKvWriteShape;

static inline const char* mla_kv_path_name(int32_t path) {
  switch (path) {
    case MLA_KV_PATH_AUTO: return "MLA_KV_PATH_AUTO";
    case MLA_KV_PATH_VECTOR: return "MLA_KV_PATH_VECTOR";
    case MLA_KV_PATH_TMA: return "MLA_KV_PATH_TMA";
    case MLA_KV_PATH_SPECIALIZED: return "MLA_KV_PATH_SPECIALIZED";
    case MLA_KV_PATH_SPREAD: return "MLA_KV_PATH_SPREAD";
    default: return "an unknown path";
  }
}

/* MLA_KV_OK when `path` with `warps` warps a block can run the write `s`, else
 * MLA_KV_ERR_UNSUPPORTED and why. `path` is a concrete path (AUTO resolved). */
static inline int32_t mla_kv_path_blocker(int32_t path, int32_t warps, const MlaKvWriteShape* s, char* msg,
                                          size_t msg_len) {
  const char* name = mla_kv_path_name(path);
  switch (path) {
    case MLA_KV_PATH_VECTOR: return MLA_KV_OK;
    case MLA_KV_PATH_TMA: {
      if (s->cc_major < 9) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len, "%s needs sm_90 or newer; this device is sm_%d0",
                             name, s->cc_major);
      }
      if (s->paged) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len, "%s writes rows; a paged format's pages are not rows",
                             name);
      }
      if (s->alignment != 16) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len,
                             "%s needs %s to be multiples of 16 bytes; this write is aligned to %d", name,
                             s->copy ? "every address, stride and size" : "the cache address, its row stride and the row size",
                             s->alignment);
      }
      /* A row larger than the shared memory cannot fit its stages; the test also keeps the product
       * below small enough not to overflow (smem_optin is a few hundred KiB, warps at most 16). */
      if (s->row_bytes > s->smem_optin || mla_kv_tma_shared_bytes(warps, s->row_bytes) > s->smem_optin) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len,
                             "%s with %d warps stages %d rows of %lld bytes a warp in shared memory; the device allows "
                             "%lld bytes a block",
                             name, warps, MLA_KV_TMA_STAGES, (long long)s->row_bytes, (long long)s->smem_optin);
      }
      return MLA_KV_OK;
    }
    case MLA_KV_PATH_SPECIALIZED:
    case MLA_KV_PATH_SPREAD: {
      const int v = mla_kv_specialized_vector_bytes(s->row_bytes);
      if (!s->copy) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len,
                             "%s copies bytes; the quantizing write runs on MLA_KV_PATH_VECTOR or MLA_KV_PATH_TMA", name);
      }
      if (v == 0) {
        char sizes[128];
        mla_kv_specialized_rows_text(sizes, sizeof sizes);
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len, "%s has kernels for rows of %s bytes; this row has %lld",
                             name, sizes, (long long)s->row_bytes);
      }
      if (s->alignment < v) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len,
                             "%s for %lld-byte rows uses %d-byte vectors; this write is aligned to %d", name,
                             (long long)s->row_bytes, v, s->alignment);
      }
      if (path == MLA_KV_PATH_SPREAD && warps != 0 && warps != mla_kv_spread_warps(s->row_bytes)) {
        return mla_kv_refuse(MLA_KV_ERR_UNSUPPORTED, msg, msg_len, "%s for %lld-byte rows runs %d warps a block, not %d",
                             name, (long long)s->row_bytes, mla_kv_spread_warps(s->row_bytes), warps);
      }
      return MLA_KV_OK;
    }
    default:
      return mla_kv_refuse(MLA_KV_ERR_INVALID_ARGUMENT, msg, msg_len, "path = %d is not a write path", path);
  }
}

/* The built-in rule of MLA_KV_PATH_AUTO (C callers; mod.ts passes its tuned choice): below
 * MLA_KV_AUTO_LARGE_N rows the specialized register copy where it can run, else the generic one,
 * with 4 warps; from there TMA where it can run with 8 warps, else the same register path with 8.
 * Fills in *path, and *warps and *rows where they are 0. */
static inline void mla_kv_choose_auto(int64_t n, const MlaKvWriteShape* s, int32_t* path, int32_t* warps,
                                      int32_t* rows) {
  const int large = n >= MLA_KV_AUTO_LARGE_N;
  const int32_t chosen_warps = *warps != 0 ? *warps : large ? 8 : 4;
  if (*path == MLA_KV_PATH_AUTO) {
    if (large && mla_kv_path_blocker(MLA_KV_PATH_TMA, chosen_warps, s, NULL, 0) == MLA_KV_OK) {
      *path = MLA_KV_PATH_TMA;
    } else if (mla_kv_path_blocker(MLA_KV_PATH_SPECIALIZED, chosen_warps, s, NULL, 0) == MLA_KV_OK) {
      *path = MLA_KV_PATH_SPECIALIZED;
    } else {
      *path = MLA_KV_PATH_VECTOR;
    }
  }
  *warps = chosen_warps;
  if (*rows == 0) *rows = 1;
}

#undef MLA_KV_CHECK
#undef MLA_KV_CHECKED

#endif /* MLA_KV_CHECKS_H_ */
