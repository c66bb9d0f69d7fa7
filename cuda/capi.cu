// capi.cu — the extern "C" surface declared in include/mla_kv.h.
//
// Every function validates its arguments before anything reaches a kernel or the runtime,
// records a message for mla_kv_last_error() on failure, and returns a status. Nothing throws
// across the boundary: each body runs inside Guard(), which turns any C++ exception into a status.
#include <cstdarg>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

#include "include/mla_kv.h"
#include "quantize_fp8.cuh"
#include "tma_store.cuh"
#include "vector_copy.cuh"

#ifndef MLA_KV_BUILD_ID
#define MLA_KV_BUILD_ID "dev"
#endif

namespace mla_kv {

namespace {

thread_local std::string t_last_error;

int32_t Fail(int32_t status, const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  t_last_error = buf;
  return status;
}

int32_t FailCuda(cudaError_t e, const char* what) {
  const int32_t status = (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
                          e == cudaErrorInvalidDevice || e == cudaErrorCompatNotSupportedOnDevice)
                             ? MLA_KV_ERR_NO_DEVICE
                             : MLA_KV_ERR_CUDA;
  return Fail(status, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

template <typename F>
int32_t Guard(F&& body) {
  try {
    return body();
  } catch (const std::exception& ex) {
    return Fail(MLA_KV_ERR_CUDA, "internal error: %s", ex.what());
  } catch (...) {
    return Fail(MLA_KV_ERR_CUDA, "internal error (unknown exception)");
  }
}

#define MLA_KV_CUDA_CHECK(call)                          \
  do {                                                   \
    cudaError_t e_ = (call);                             \
    if (e_ != cudaSuccess) return FailCuda(e_, #call);   \
  } while (0)

// What the hot path needs to know about a device, read once. Reading properties on every write
// would cost more than the launch.
struct DeviceFacts {
  int cc_major = 0;
  int smem_optin = 0;
};

std::once_flag g_devices_once;
cudaError_t g_devices_error = cudaSuccess;
std::vector<DeviceFacts> g_devices;

cudaError_t LoadDevices() {
  std::call_once(g_devices_once, [] {
    int count = 0;
    g_devices_error = cudaGetDeviceCount(&count);
    if (g_devices_error == cudaErrorNoDevice) {
      g_devices_error = cudaSuccess;  // a driver but no GPU: zero devices, not a failure
      count = 0;
    }
    if (g_devices_error != cudaSuccess) return;
    g_devices.resize(count);
    for (int d = 0; d < count; ++d) {
      cudaDeviceGetAttribute(&g_devices[d].cc_major, cudaDevAttrComputeCapabilityMajor, d);
      cudaDeviceGetAttribute(&g_devices[d].smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, d);
    }
  });
  return g_devices_error;
}

// Makes `device` current for the calling thread, after checking that it exists.
int32_t UseDevice(int32_t device) {
  cudaError_t e = LoadDevices();
  if (e != cudaSuccess) return FailCuda(e, "cudaGetDeviceCount");
  if (g_devices.empty()) return Fail(MLA_KV_ERR_NO_DEVICE, "no CUDA device is visible (the driver found no GPU)");
  if (device < 0 || device >= static_cast<int32_t>(g_devices.size())) {
    return Fail(MLA_KV_ERR_NO_DEVICE, "device %d does not exist (%zu visible)", device, g_devices.size());
  }
  int current = -1;
  MLA_KV_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) MLA_KV_CUDA_CHECK(cudaSetDevice(device));
  return MLA_KV_OK;
}

#define MLA_KV_USE_DEVICE(device)             \
  do {                                        \
    int32_t s_ = UseDevice(device);           \
    if (s_ != MLA_KV_OK) return s_;           \
  } while (0)

#define MLA_KV_REQUIRE(cond, ...)                                      \
  do {                                                                 \
    if (!(cond)) return Fail(MLA_KV_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

cudaStream_t AsStream(void* s) { return static_cast<cudaStream_t>(s); }

bool IsPowerOfTwoIn(int32_t x, int32_t lo, int32_t hi) { return x >= lo && x <= hi && (x & (x - 1)) == 0; }

// The checks both writes share: n, the launch shape, the flags and the reserved slot.
int32_t CheckLaunchArguments(int64_t n, int32_t path, int32_t warps_per_block, int32_t rows_per_warp, int32_t flags,
                             int64_t reserved_slot) {
  MLA_KV_REQUIRE(n >= 0, "n = %lld must be >= 0", static_cast<long long>(n));
  MLA_KV_REQUIRE(path == MLA_KV_PATH_AUTO || path == MLA_KV_PATH_VECTOR || path == MLA_KV_PATH_TMA,
                 "path = %d is not one of MLA_KV_PATH_AUTO/VECTOR/TMA", path);
  MLA_KV_REQUIRE((path == MLA_KV_PATH_AUTO && warps_per_block == 0) || IsPowerOfTwoIn(warps_per_block, 1, 16),
                 "warps_per_block = %d must be 1, 2, 4, 8 or 16 (or 0 with MLA_KV_PATH_AUTO)", warps_per_block);
  MLA_KV_REQUIRE((path == MLA_KV_PATH_AUTO && rows_per_warp == 0) || IsPowerOfTwoIn(rows_per_warp, 1, 4),
                 "rows_per_warp = %d must be 1, 2 or 4 (or 0 with MLA_KV_PATH_AUTO)", rows_per_warp);
  MLA_KV_REQUIRE((flags & ~MLA_KV_FLAG_PDL) == 0, "flags = %d has bits other than MLA_KV_FLAG_PDL", flags);
  MLA_KV_REQUIRE(reserved_slot >= -1, "reserved_slot = %lld must be a slot (>= 0) or -1 for none",
                 static_cast<long long>(reserved_slot));
  return MLA_KV_OK;
}

// The built-in rule for MLA_KV_PATH_AUTO (C callers; mod.ts passes the tuned choice explicitly):
// TMA from n = 768 where it can run, 8 warps for large batches and 4 below.
void ChooseAutoLaunch(int64_t n, bool tma_runnable, int32_t* path, int32_t* warps_per_block, int32_t* rows_per_warp) {
  const bool big = n >= 768;
  if (*path == MLA_KV_PATH_AUTO) *path = tma_runnable && big ? MLA_KV_PATH_TMA : MLA_KV_PATH_VECTOR;
  if (*warps_per_block == 0) *warps_per_block = big ? 8 : 4;
  if (*rows_per_warp == 0) *rows_per_warp = 1;
}

// Why the TMA path cannot run this write on `device`, as a status with a message; OK when it can.
// `aligned_what` names what must be 16-byte aligned, for the message.
int32_t CheckTmaRunnable(int32_t device, int cc_major, int smem_optin, const char* aligned_what, int aligned_to,
                         int warps, int64_t row_bytes) {
  if (cc_major < 9) {
    return Fail(MLA_KV_ERR_UNSUPPORTED, "the TMA path needs sm_90 or newer; device %d is sm_%d", device, cc_major * 10);
  }
  if (aligned_to < 16) {
    return Fail(MLA_KV_ERR_UNSUPPORTED, "the TMA path needs %s to be a multiple of 16 bytes; this write is aligned to %d",
                aligned_what, aligned_to);
  }
  const int64_t smem = TmaSharedBytes(warps, row_bytes);
  if (smem > smem_optin) {
    return Fail(MLA_KV_ERR_UNSUPPORTED,
                "the TMA path would stage %lld bytes of shared memory per block (%d warps x %d rows of %lld bytes); "
                "the device allows %d",
                static_cast<long long>(smem), warps, kTmaStages, static_cast<long long>(row_bytes), smem_optin);
  }
  return MLA_KV_OK;
}

// The largest power of two up to 16 that divides every value.
int AlignmentOf(std::initializer_list<uint64_t> values) {
  uint64_t bits = 0;
  for (uint64_t v : values) bits |= v;
  for (int v = 16; v > 1; v >>= 1) {
    if ((bits & static_cast<uint64_t>(v - 1)) == 0) return v;
  }
  return 1;
}

// The quantizing formats' argument facts: which are paged, the bytes of a row (row formats) or a
// page (paged formats), and the rule a format applies for `rule` (-1 when it does not accept it).
bool FormatIsPaged(int32_t format) { return format == MLA_KV_FORMAT_FP8_DS_V4 || format == MLA_KV_FORMAT_FP8_INDEXER; }

int64_t QuantizedRowOrPageBytes(int32_t format, int64_t nope_elems, int64_t rope_elems, int64_t page_size) {
  switch (format) {
    case MLA_KV_FORMAT_FP8_DS_MLA: return MLA_KV_DS_MLA_ROW_BYTES;
    case MLA_KV_FORMAT_FP8_DS_V4:
      return (page_size * (MLA_KV_DS_V4_TOKEN_BYTES + MLA_KV_DS_V4_SCALE_BYTES) + MLA_KV_DS_V4_TOKEN_BYTES - 1) /
             MLA_KV_DS_V4_TOKEN_BYTES * MLA_KV_DS_V4_TOKEN_BYTES;
    case MLA_KV_FORMAT_FP8_INDEXER: return page_size * MLA_KV_INDEXER_TOKEN_BYTES;
    default: return nope_elems + rope_elems;
  }
}

int32_t ResolveScaleRule(int32_t format, int32_t rule) {
  switch (format) {
    case MLA_KV_FORMAT_FP8_DS_MLA:
      if (rule == MLA_KV_SCALE_DEFAULT) return MLA_KV_SCALE_POW2;
      return rule == MLA_KV_SCALE_POW2 || rule == MLA_KV_SCALE_AMAX ? rule : -1;
    case MLA_KV_FORMAT_FP8_DS_V4: return rule == MLA_KV_SCALE_DEFAULT || rule == MLA_KV_SCALE_POW2 ? MLA_KV_SCALE_POW2 : -1;
    case MLA_KV_FORMAT_FP8_INDEXER:
      if (rule == MLA_KV_SCALE_DEFAULT) return MLA_KV_SCALE_AMAX;
      return rule == MLA_KV_SCALE_AMAX || rule == MLA_KV_SCALE_UE8M0 ? rule : -1;
    default: return rule == MLA_KV_SCALE_DEFAULT ? MLA_KV_SCALE_DEFAULT : -1;
  }
}

}  // namespace
}  // namespace mla_kv

using namespace mla_kv;

extern "C" {

// ---- library identity -----------------------------------------------------------------------

int32_t mla_kv_abi_version(void) { return MLA_KV_ABI_VERSION; }
const char* mla_kv_build_id(void) { return MLA_KV_BUILD_ID; }
const char* mla_kv_last_error(void) { return t_last_error.c_str(); }

// ---- driver and devices ---------------------------------------------------------------------

int32_t mla_kv_driver_version(int32_t* out_version) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_version != nullptr, "out_version is NULL");
    int v = 0;
    MLA_KV_CUDA_CHECK(cudaDriverGetVersion(&v));
    *out_version = v;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_runtime_version(int32_t* out_version) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_version != nullptr, "out_version is NULL");
    int v = 0;
    MLA_KV_CUDA_CHECK(cudaRuntimeGetVersion(&v));
    *out_version = v;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_device_count(int32_t* out_count) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_count != nullptr, "out_count is NULL");
    cudaError_t e = LoadDevices();
    if (e != cudaSuccess) return FailCuda(e, "cudaGetDeviceCount");
    *out_count = static_cast<int32_t>(g_devices.size());
    return MLA_KV_OK;
  });
}

int32_t mla_kv_device_property(int32_t device, int32_t prop, int64_t* out_value) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_value != nullptr, "out_value is NULL");
    MLA_KV_USE_DEVICE(device);
    int v = 0;
    switch (prop) {
      case MLA_KV_PROP_CC_MAJOR: MLA_KV_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, device)); break;
      case MLA_KV_PROP_CC_MINOR: MLA_KV_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMinor, device)); break;
      case MLA_KV_PROP_SM_COUNT: MLA_KV_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device)); break;
      case MLA_KV_PROP_L2_BYTES: MLA_KV_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, device)); break;
      case MLA_KV_PROP_SMEM_PER_BLOCK_OPTIN: MLA_KV_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)); break;
      case MLA_KV_PROP_PCI_BUS_ID: MLA_KV_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrPciBusId, device)); break;
      case MLA_KV_PROP_DRIVER_VERSION: MLA_KV_CUDA_CHECK(cudaDriverGetVersion(&v)); break;
      case MLA_KV_PROP_RUNTIME_VERSION: MLA_KV_CUDA_CHECK(cudaRuntimeGetVersion(&v)); break;
      case MLA_KV_PROP_TOTAL_MEMORY:
      case MLA_KV_PROP_FREE_MEMORY: {
        size_t free_bytes = 0, total_bytes = 0;
        MLA_KV_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        *out_value = static_cast<int64_t>(prop == MLA_KV_PROP_FREE_MEMORY ? free_bytes : total_bytes);
        return MLA_KV_OK;
      }
      default: return Fail(MLA_KV_ERR_INVALID_ARGUMENT, "unknown device property %d", prop);
    }
    *out_value = v;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_device_name(int32_t device, char* buf, int32_t buf_len) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(buf != nullptr && buf_len > 0, "buf is NULL or buf_len <= 0");
    MLA_KV_USE_DEVICE(device);
    cudaDeviceProp prop;
    MLA_KV_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    snprintf(buf, static_cast<size_t>(buf_len), "%s", prop.name);
    return MLA_KV_OK;
  });
}

// ---- memory ---------------------------------------------------------------------------------

int32_t mla_kv_malloc(int32_t device, uint64_t bytes, void** out_ptr) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_ptr != nullptr, "out_ptr is NULL");
    MLA_KV_REQUIRE(bytes > 0, "bytes must be > 0");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaMalloc(out_ptr, bytes));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_free(int32_t device, void* ptr) {
  return Guard([&]() -> int32_t {
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaFree(ptr));
    return MLA_KV_OK;
  });
}

static int32_t Copy(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream, cudaMemcpyKind kind,
                    const char* what) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(dst != nullptr && src != nullptr, "%s: dst or src is NULL", what);
    MLA_KV_USE_DEVICE(device);
    if (bytes == 0) return MLA_KV_OK;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, AsStream(stream));
    if (e != cudaSuccess) return FailCuda(e, what);
    return MLA_KV_OK;
  });
}

int32_t mla_kv_memcpy_htod(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream) {
  return Copy(device, dst, src, bytes, stream, cudaMemcpyHostToDevice, "cudaMemcpyAsync(host to device)");
}
int32_t mla_kv_memcpy_dtoh(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream) {
  return Copy(device, dst, src, bytes, stream, cudaMemcpyDeviceToHost, "cudaMemcpyAsync(device to host)");
}
int32_t mla_kv_memcpy_dtod(int32_t device, void* dst, const void* src, uint64_t bytes, void* stream) {
  return Copy(device, dst, src, bytes, stream, cudaMemcpyDeviceToDevice, "cudaMemcpyAsync(device to device)");
}

int32_t mla_kv_memset(int32_t device, void* dst, int32_t byte_value, uint64_t bytes, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(dst != nullptr, "dst is NULL");
    MLA_KV_REQUIRE(byte_value >= 0 && byte_value <= 255, "byte_value %d is not a byte", byte_value);
    MLA_KV_USE_DEVICE(device);
    if (bytes == 0) return MLA_KV_OK;
    MLA_KV_CUDA_CHECK(cudaMemsetAsync(dst, byte_value, bytes, AsStream(stream)));
    return MLA_KV_OK;
  });
}

// ---- streams, events, graphs ----------------------------------------------------------------

int32_t mla_kv_stream_create(int32_t device, void** out_stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_stream != nullptr, "out_stream is NULL");
    MLA_KV_USE_DEVICE(device);
    cudaStream_t s = nullptr;
    // Non-blocking: the stream must not serialise against the legacy default stream, which other
    // libraries in the same process may be using.
    MLA_KV_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *out_stream = s;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_destroy(int32_t device, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(stream != nullptr, "the default stream cannot be destroyed");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaStreamDestroy(AsStream(stream)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_release(int32_t device, void* stream) {
  return Guard([&]() -> int32_t {
    (void)stream;
    MLA_KV_USE_DEVICE(device);
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_synchronize(int32_t device, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaStreamSynchronize(AsStream(stream)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_is_capturing(int32_t device, void* stream, int32_t* out_capturing) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_capturing != nullptr, "out_capturing is NULL");
    MLA_KV_USE_DEVICE(device);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    MLA_KV_CUDA_CHECK(cudaStreamIsCapturing(AsStream(stream), &status));
    *out_capturing = status == cudaStreamCaptureStatusActive ? 1 : 0;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_begin_capture(int32_t device, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(stream != nullptr, "the legacy default stream cannot be captured; create a stream");
    MLA_KV_USE_DEVICE(device);
    // Thread-local mode: only this thread's unsafe calls invalidate the capture, so other threads
    // of the process keep working while one captures.
    MLA_KV_CUDA_CHECK(cudaStreamBeginCapture(AsStream(stream), cudaStreamCaptureModeThreadLocal));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_end_capture(int32_t device, void* stream, void** out_graph) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_graph != nullptr, "out_graph is NULL");
    MLA_KV_USE_DEVICE(device);
    cudaGraph_t graph = nullptr;
    MLA_KV_CUDA_CHECK(cudaStreamEndCapture(AsStream(stream), &graph));
    cudaGraphExec_t exec = nullptr;
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return FailCuda(e, "cudaGraphInstantiate");
    *out_graph = exec;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_graph_launch(int32_t device, void* graph, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(graph != nullptr, "graph is NULL");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), AsStream(stream)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_graph_destroy(int32_t device, void* graph) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(graph != nullptr, "graph is NULL");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_event_create(int32_t device, void** out_event) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_event != nullptr, "out_event is NULL");
    MLA_KV_USE_DEVICE(device);
    cudaEvent_t e = nullptr;
    MLA_KV_CUDA_CHECK(cudaEventCreate(&e));
    *out_event = e;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_event_destroy(int32_t device, void* event) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(event != nullptr, "event is NULL");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_event_record(int32_t device, void* event, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(event != nullptr, "event is NULL");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), AsStream(stream)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_event_elapsed_ms(int32_t device, void* start, void* end, float* out_ms) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(start != nullptr && end != nullptr && out_ms != nullptr, "start, end or out_ms is NULL");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
    MLA_KV_CUDA_CHECK(cudaEventElapsedTime(out_ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
    return MLA_KV_OK;
  });
}

// ---- the write ------------------------------------------------------------------------------

int32_t mla_kv_path_supported(int32_t device, int32_t path, int32_t* out_supported) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_supported != nullptr, "out_supported is NULL");
    MLA_KV_USE_DEVICE(device);
    switch (path) {
      case MLA_KV_PATH_AUTO:
      case MLA_KV_PATH_VECTOR: *out_supported = 1; break;
      case MLA_KV_PATH_TMA: *out_supported = g_devices[device].cc_major >= 9 ? 1 : 0; break;
      default: return Fail(MLA_KV_ERR_INVALID_ARGUMENT, "unknown path %d", path);
    }
    return MLA_KV_OK;
  });
}

int32_t mla_kv_set_kv_buffer(int32_t device, void* stream, void* cache, int64_t capacity, int64_t cache_row_stride,
                             const void* loc, int32_t loc_elem_bytes, int64_t n, const void* nope,
                             int64_t nope_row_stride, int64_t nope_bytes, const void* rope, int64_t rope_row_stride,
                             int64_t rope_bytes, int64_t reserved_slot, int32_t path, int32_t warps_per_block,
                             int32_t rows_per_warp, int32_t flags) {
  return Guard([&]() -> int32_t {
    const int32_t launch_status = CheckLaunchArguments(n, path, warps_per_block, rows_per_warp, flags, reserved_slot);
    if (launch_status != MLA_KV_OK) return launch_status;
    MLA_KV_REQUIRE(cache != nullptr, "cache is NULL");
    MLA_KV_REQUIRE(loc != nullptr, "loc is NULL");
    MLA_KV_REQUIRE(nope != nullptr, "nope is NULL");
    MLA_KV_REQUIRE(rope != nullptr, "rope is NULL");
    MLA_KV_REQUIRE(loc_elem_bytes == 4 || loc_elem_bytes == 8, "loc_elem_bytes = %d must be 4 or 8", loc_elem_bytes);
    MLA_KV_REQUIRE(reinterpret_cast<uint64_t>(loc) % static_cast<uint64_t>(loc_elem_bytes) == 0,
                   "loc is not aligned to its %d-byte elements", loc_elem_bytes);
    MLA_KV_REQUIRE(capacity > 0, "capacity = %lld must be > 0", static_cast<long long>(capacity));
    MLA_KV_REQUIRE(nope_bytes >= 0 && rope_bytes >= 0 && nope_bytes + rope_bytes > 0,
                   "nope_bytes = %lld and rope_bytes = %lld must be >= 0 with a positive sum",
                   static_cast<long long>(nope_bytes), static_cast<long long>(rope_bytes));
    MLA_KV_REQUIRE(nope_row_stride >= nope_bytes, "nope_row_stride = %lld is smaller than nope_bytes = %lld",
                   static_cast<long long>(nope_row_stride), static_cast<long long>(nope_bytes));
    MLA_KV_REQUIRE(rope_row_stride >= rope_bytes, "rope_row_stride = %lld is smaller than rope_bytes = %lld",
                   static_cast<long long>(rope_row_stride), static_cast<long long>(rope_bytes));
    MLA_KV_REQUIRE(cache_row_stride >= nope_bytes + rope_bytes,
                   "cache_row_stride = %lld is smaller than nope_bytes + rope_bytes = %lld",
                   static_cast<long long>(cache_row_stride), static_cast<long long>(nope_bytes + rope_bytes));
    MLA_KV_REQUIRE(capacity <= INT64_MAX / cache_row_stride, "capacity * cache_row_stride overflows");
    MLA_KV_USE_DEVICE(device);
    if (n == 0) return MLA_KV_OK;  // nothing to write, nothing launched

    SetKvBufferParams p;
    p.cache = static_cast<uint8_t*>(cache);
    p.loc = loc;
    p.nope = static_cast<const uint8_t*>(nope);
    p.rope = static_cast<const uint8_t*>(rope);
    p.capacity = capacity;
    p.cache_row_stride = cache_row_stride;
    p.nope_row_stride = nope_row_stride;
    p.rope_row_stride = rope_row_stride;
    p.nope_bytes = nope_bytes;
    p.rope_bytes = rope_bytes;
    p.n = n;
    p.reserved_slot = reserved_slot;

    const DeviceFacts& facts = g_devices[device];
    // The widest vector that divides every address, stride and size of the write.
    const int vec = AlignmentOf({reinterpret_cast<uint64_t>(p.cache), reinterpret_cast<uint64_t>(p.nope),
                                 reinterpret_cast<uint64_t>(p.rope), static_cast<uint64_t>(p.cache_row_stride),
                                 static_cast<uint64_t>(p.nope_row_stride), static_cast<uint64_t>(p.rope_row_stride),
                                 static_cast<uint64_t>(p.nope_bytes), static_cast<uint64_t>(p.rope_bytes)});
    const int64_t row_bytes = nope_bytes + rope_bytes;
    const bool tma_runnable = facts.cc_major >= 9 && vec == 16;
    // Before sm_90 there is no programmatic dependent launch; the flag is documented as no effect.
    const bool pdl = (flags & MLA_KV_FLAG_PDL) != 0 && facts.cc_major >= 9;

    if (path == MLA_KV_PATH_AUTO) {
      ChooseAutoLaunch(n, tma_runnable && TmaSharedBytes(8, row_bytes) <= facts.smem_optin, &path, &warps_per_block,
                       &rows_per_warp);
    }

    cudaError_t e;
    if (path == MLA_KV_PATH_TMA) {
      const int32_t tma_status =
          CheckTmaRunnable(device, facts.cc_major, facts.smem_optin, "every address, stride and size", vec,
                           warps_per_block, row_bytes);
      if (tma_status != MLA_KV_OK) return tma_status;
      e = SetKvBufferTma(p, loc_elem_bytes, warps_per_block, rows_per_warp, pdl, AsStream(stream));
    } else {
      e = SetKvBufferVector(p, loc_elem_bytes, vec, warps_per_block, rows_per_warp, pdl, AsStream(stream));
    }
    if (e != cudaSuccess) return FailCuda(e, path == MLA_KV_PATH_TMA ? "launch of SetKvBufferTmaKernel" : "launch of SetKvBufferVectorKernel");
    return MLA_KV_OK;
  });
}

int32_t mla_kv_set_kv_buffer_quantized(int32_t device, void* stream, int32_t format, int32_t scale_rule, void* cache,
                                       int64_t capacity, int64_t cache_row_stride, int64_t page_size, const void* loc,
                                       int32_t loc_elem_bytes, int64_t n,
                                       int32_t source_dtype, const void* nope, int64_t nope_row_stride,
                                       int64_t nope_elems, const void* rope, int64_t rope_row_stride, int64_t rope_elems,
                                       float scale, int64_t reserved_slot, int32_t path, int32_t warps_per_block,
                                       int32_t rows_per_warp, int32_t flags) {
  return Guard([&]() -> int32_t {
    const int32_t launch_status = CheckLaunchArguments(n, path, warps_per_block, rows_per_warp, flags, reserved_slot);
    if (launch_status != MLA_KV_OK) return launch_status;
    MLA_KV_REQUIRE(format >= MLA_KV_FORMAT_FP8_E4M3 && format <= MLA_KV_FORMAT_FP8_INDEXER,
                   "format = %d is not one of MLA_KV_FORMAT_FP8_E4M3/E5M2/DS_MLA/DS_V4/INDEXER", format);
    const int32_t rule = ResolveScaleRule(format, scale_rule);
    MLA_KV_REQUIRE(rule >= 0, "scale_rule = %d is not one format %d accepts", scale_rule, format);
    const bool paged = FormatIsPaged(format);
    if (paged) {
      MLA_KV_REQUIRE(page_size >= 1 && capacity > 0 && capacity % page_size == 0,
                     "page_size = %lld must be >= 1 and divide capacity = %lld", static_cast<long long>(page_size),
                     static_cast<long long>(capacity));
      MLA_KV_REQUIRE(page_size <= INT64_MAX / 1024, "page_size = %lld is too large", static_cast<long long>(page_size));
    } else {
      MLA_KV_REQUIRE(page_size == 0, "page_size = %lld must be 0 for a row format", static_cast<long long>(page_size));
    }
    MLA_KV_REQUIRE(source_dtype == MLA_KV_SOURCE_BF16 || source_dtype == MLA_KV_SOURCE_FP16,
                   "source_dtype = %d is not MLA_KV_SOURCE_BF16 or MLA_KV_SOURCE_FP16", source_dtype);
    MLA_KV_REQUIRE(cache != nullptr, "cache is NULL");
    MLA_KV_REQUIRE(loc != nullptr, "loc is NULL");
    MLA_KV_REQUIRE(nope != nullptr, "nope is NULL");
    MLA_KV_REQUIRE(rope != nullptr || rope_elems == 0, "rope is NULL");
    MLA_KV_REQUIRE(loc_elem_bytes == 4 || loc_elem_bytes == 8, "loc_elem_bytes = %d must be 4 or 8", loc_elem_bytes);
    MLA_KV_REQUIRE(reinterpret_cast<uint64_t>(loc) % static_cast<uint64_t>(loc_elem_bytes) == 0,
                   "loc is not aligned to its %d-byte elements", loc_elem_bytes);
    MLA_KV_REQUIRE(capacity > 0, "capacity = %lld must be > 0", static_cast<long long>(capacity));
    const bool ds_mla = format == MLA_KV_FORMAT_FP8_DS_MLA;
    const bool tile_scaled = ds_mla || paged;
    if (tile_scaled) {
      const int64_t want_nope = ds_mla ? MLA_KV_DS_MLA_NOPE_ELEMS
                                       : format == MLA_KV_FORMAT_FP8_DS_V4 ? MLA_KV_DS_V4_NOPE_ELEMS : MLA_KV_INDEXER_ELEMS;
      const int64_t want_rope = ds_mla ? MLA_KV_DS_MLA_ROPE_ELEMS : format == MLA_KV_FORMAT_FP8_DS_V4 ? MLA_KV_DS_V4_ROPE_ELEMS : 0;
      MLA_KV_REQUIRE(nope_elems == want_nope && rope_elems == want_rope,
                     "format %d has %lld nope and %lld rope elements a row; got %lld and %lld", format,
                     static_cast<long long>(want_nope), static_cast<long long>(want_rope), static_cast<long long>(nope_elems),
                     static_cast<long long>(rope_elems));
    } else {
      MLA_KV_REQUIRE(nope_elems >= 0 && nope_elems % 16 == 0 && nope_elems <= kFlatMaxNopeElems,
                     "nope_elems = %lld must be a multiple of 16 in 0..%lld", static_cast<long long>(nope_elems),
                     static_cast<long long>(kFlatMaxNopeElems));
      MLA_KV_REQUIRE(rope_elems >= 0 && rope_elems % 2 == 0 && rope_elems <= kFlatMaxRopeElems,
                     "rope_elems = %lld must be a multiple of 2 in 0..%lld", static_cast<long long>(rope_elems),
                     static_cast<long long>(kFlatMaxRopeElems));
      MLA_KV_REQUIRE(nope_elems + rope_elems > 0, "nope_elems + rope_elems must be > 0");
      MLA_KV_REQUIRE(scale > 0.0f && scale <= 3.4028234663852886e38f, "scale = %g must be finite and > 0",
                     static_cast<double>(scale));
    }
    MLA_KV_REQUIRE(reinterpret_cast<uint64_t>(nope) % 2 == 0 && reinterpret_cast<uint64_t>(rope) % 2 == 0 &&
                       nope_row_stride % 2 == 0 && rope_row_stride % 2 == 0,
                   "nope and rope addresses and row strides must be multiples of their 2-byte elements");
    MLA_KV_REQUIRE(nope_row_stride >= 2 * nope_elems, "nope_row_stride = %lld bytes is smaller than a row of %lld elements",
                   static_cast<long long>(nope_row_stride), static_cast<long long>(nope_elems));
    MLA_KV_REQUIRE(rope_row_stride >= 2 * rope_elems, "rope_row_stride = %lld bytes is smaller than a row of %lld elements",
                   static_cast<long long>(rope_row_stride), static_cast<long long>(rope_elems));
    const Fp8Format fp8 = format == MLA_KV_FORMAT_FP8_DS_MLA  ? Fp8Format::kDsMla
                          : format == MLA_KV_FORMAT_FP8_DS_V4  ? Fp8Format::kDsV4
                          : format == MLA_KV_FORMAT_FP8_INDEXER ? Fp8Format::kIndexer
                          : format == MLA_KV_FORMAT_FP8_E5M2   ? Fp8Format::kFlatE5m2
                                                               : Fp8Format::kFlatE4m3;
    // A row format's row, or a paged format's page.
    const int64_t row_bytes = QuantizedRowOrPageBytes(format, nope_elems, rope_elems, page_size);
    MLA_KV_REQUIRE(cache_row_stride >= row_bytes, "cache_row_stride = %lld is smaller than the format's %s of %lld bytes",
                   static_cast<long long>(cache_row_stride), paged ? "page" : "row", static_cast<long long>(row_bytes));
    const int64_t cache_rows = paged ? capacity / page_size : capacity;
    MLA_KV_REQUIRE(cache_rows <= INT64_MAX / cache_row_stride, "the cache's rows * cache_row_stride overflows");
    MLA_KV_USE_DEVICE(device);
    if (n == 0) return MLA_KV_OK;

    QuantizeParams p;
    p.cache = static_cast<uint8_t*>(cache);
    p.loc = loc;
    p.nope = static_cast<const uint8_t*>(nope);
    p.rope = static_cast<const uint8_t*>(rope);
    p.capacity = capacity;
    p.cache_row_stride = cache_row_stride;
    p.nope_row_stride = nope_row_stride;
    p.rope_row_stride = rope_row_stride;
    p.nope_elems = nope_elems;
    p.rope_elems = rope_elems;
    p.n = n;
    p.reserved_slot = reserved_slot;
    p.loc_is_64 = loc_elem_bytes == 8;
    p.scale = tile_scaled ? 1.0f : scale;
    // A power-of-two scale (1 is the common one) divides exactly as a multiplication by its
    // reciprocal, which is exact too as long as it is a normal number.
    int exponent = 0;
    const float mantissa = std::frexp(p.scale, &exponent);
    p.scale_is_power_of_two = mantissa == 0.5f && exponent > -125 && exponent < 126;
    p.reciprocal = p.scale_is_power_of_two ? 1.0f / p.scale : 0.0f;
    p.sources_vec16 = AlignmentOf({reinterpret_cast<uint64_t>(nope), reinterpret_cast<uint64_t>(rope),
                                   static_cast<uint64_t>(nope_row_stride), static_cast<uint64_t>(rope_row_stride)}) == 16;
    // Stores are 16-byte vectors at multiples of 16 in the row (and 2-byte pairs after a flat
    // row's nope part, a multiple of 16 elements); else byte by byte.
    p.cache_vec = AlignmentOf({reinterpret_cast<uint64_t>(cache), static_cast<uint64_t>(cache_row_stride)}) == 16;
    p.errors = nullptr;  // the device's word until per-stream slots are wired
    p.page_size = page_size;
    p.scale_rule = rule;

    const DeviceFacts& facts = g_devices[device];
    const int tma_align = AlignmentOf({reinterpret_cast<uint64_t>(cache), static_cast<uint64_t>(cache_row_stride),
                                       static_cast<uint64_t>(row_bytes)});
    const bool pdl = (flags & MLA_KV_FLAG_PDL) != 0 && facts.cc_major >= 9;
    if (path == MLA_KV_PATH_AUTO) {
      ChooseAutoLaunch(n, !paged && facts.cc_major >= 9 && tma_align == 16 && TmaSharedBytes(8, row_bytes) <= facts.smem_optin,
                       &path, &warps_per_block, &rows_per_warp);
    }
    if (path == MLA_KV_PATH_TMA && paged) {
      return Fail(MLA_KV_ERR_UNSUPPORTED, "the TMA path writes row formats only; format %d is paged (use the vector path)", format);
    }
    if (path == MLA_KV_PATH_TMA) {
      const int32_t tma_status = CheckTmaRunnable(device, facts.cc_major, facts.smem_optin,
                                                  "the cache address, its row stride and the row size", tma_align,
                                                  warps_per_block, row_bytes);
      if (tma_status != MLA_KV_OK) return tma_status;
    }
    const bool tma = path == MLA_KV_PATH_TMA;
    cudaError_t e = SetKvBufferQuantized(p, fp8, source_dtype == MLA_KV_SOURCE_FP16, tma, warps_per_block, rows_per_warp,
                                         pdl, AsStream(stream));
    if (e != cudaSuccess) return FailCuda(e, tma ? "launch of QuantizeTmaKernel" : "launch of QuantizeVectorKernel");
    return MLA_KV_OK;
  });
}

int32_t mla_kv_check_errors(int32_t device, void* stream, int64_t* out_count, int64_t* out_first_index) {
  (void)stream;
  return Guard([&]() -> int32_t {
    MLA_KV_USE_DEVICE(device);
    if (out_count) *out_count = 0;
    if (out_first_index) *out_first_index = 0;
    MLA_KV_CUDA_CHECK(cudaDeviceSynchronize());
    OutOfRangeWord word;
    MLA_KV_CUDA_CHECK(cudaMemcpyFromSymbol(&word, g_out_of_range, sizeof(word)));
    if (word.count == 0) return MLA_KV_OK;
    const OutOfRangeWord clean = {0ull, ~0ull};
    MLA_KV_CUDA_CHECK(cudaMemcpyToSymbol(g_out_of_range, &clean, sizeof(clean)));
    if (out_count) *out_count = static_cast<int64_t>(word.count);
    if (out_first_index) *out_first_index = static_cast<int64_t>(word.first_index);
    return Fail(MLA_KV_ERR_OUT_OF_RANGE_LOC,
                "%llu row(s) were skipped because their loc was >= the cache capacity (first at row index %llu)",
                word.count, word.first_index);
  });
}

}  // extern "C"
