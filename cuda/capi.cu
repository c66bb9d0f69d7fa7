// capi.cu — the extern "C" surface declared in include/mla_kv.h.
//
// Every function validates its arguments before anything reaches a kernel or the runtime,
// records a message for mla_kv_last_error() on failure, and returns a status. Nothing throws
// across the boundary: each body runs inside Guard(), which turns any C++ exception into a status.
// The writes check in a fixed order: their arguments (checks.h, before the library looks for a
// device, so bad arguments are refused alike on a machine without a GPU), then the device, then
// whether the chosen path can run the write on it.
#include <cstdarg>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "checks.h"
#include "error_slots.cuh"
#include "include/mla_kv.h"
#include "quantize_fp8.cuh"
#include "specialized_copy.cuh"
#include "spread_copy.cuh"
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

// Makes `device` current for the calling thread for one call, after checking that it exists, and
// makes the caller's device current again when the call returns. The current device is only
// touched when it differs: cudaSetDevice is not free, and the common caller uses one device.
class DeviceScope {
 public:
  DeviceScope() = default;
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);  // a failure here has no caller left to tell
  }

  int32_t Enter(int32_t device) {
    cudaError_t e = LoadDevices();
    if (e != cudaSuccess) return FailCuda(e, "cudaGetDeviceCount");
    if (g_devices.empty()) return Fail(MLA_KV_ERR_NO_DEVICE, "no CUDA device is visible (the driver found no GPU)");
    if (device < 0 || device >= static_cast<int32_t>(g_devices.size())) {
      return Fail(MLA_KV_ERR_NO_DEVICE, "device %d does not exist (%zu visible)", device, g_devices.size());
    }
    int current = -1;
    MLA_KV_CUDA_CHECK(cudaGetDevice(&current));
    if (current != device) {
      MLA_KV_CUDA_CHECK(cudaSetDevice(device));
      previous_ = current;
    }
    return MLA_KV_OK;
  }

 private:
  int previous_ = -1;
};

// Makes `device` current until the end of the enclosing block (the body of one call).
#define MLA_KV_USE_DEVICE(device)                    \
  DeviceScope device_scope_;                         \
  do {                                               \
    int32_t s_ = device_scope_.Enter(device);        \
    if (s_ != MLA_KV_OK) return s_;                  \
  } while (0)

#define MLA_KV_REQUIRE(cond, ...)                                      \
  do {                                                                 \
    if (!(cond)) return Fail(MLA_KV_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

cudaStream_t AsStream(void* s) { return static_cast<cudaStream_t>(s); }

// Which stream owns which error slot (error_slots.cuh).
ErrorRegistry g_errors;

// The message of a failed checks.h check as the calling thread's error.
int32_t FailWith(int32_t status, const char* message) { return Fail(status, "%s", message); }

// A stream the caller is capturing cannot take the library's own work (a check's kernel, a
// release's event): it would be recorded into the caller's graph.
int32_t RequireNotCapturing(cudaStream_t stream, const char* what) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  MLA_KV_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  if (status != cudaStreamCaptureStatusNone) {
    return Fail(MLA_KV_ERR_INVALID_ARGUMENT, "%s while the stream is being captured; end the capture first", what);
  }
  return MLA_KV_OK;
}

// The slot a write on `stream` counts into, as a status.
int32_t ErrorsForWrite(int32_t device, cudaStream_t stream, OutOfRangeWord** errors) {
  const cudaError_t e = g_errors.SlotForWrite(device, stream, errors);
  if (e == cudaErrorStreamCaptureUnsupported) {
    return Fail(MLA_KV_ERR_UNSUPPORTED,
                "every error slot of device %d is in use and the stream is being captured, when none can be "
                "allocated; create the stream with mla_kv_stream_create or write on it once before capturing",
                device);
  }
  if (e != cudaSuccess) return FailCuda(e, "allocating the stream's error slot");
  return MLA_KV_OK;
}

// What the path rule needs to know about the device.
MlaKvWriteShape WriteShape(int32_t device, int copy, int paged, int64_t row_bytes, int alignment) {
  MlaKvWriteShape shape;
  shape.copy = copy;
  shape.paged = paged;
  shape.row_bytes = row_bytes;
  shape.alignment = alignment;
  shape.cc_major = g_devices[device].cc_major;
  shape.smem_optin = g_devices[device].smem_optin;
  return shape;
}

// Resolves MLA_KV_PATH_AUTO and refuses a path that cannot run the write.
int32_t ChoosePath(int64_t n, const MlaKvWriteShape& shape, int32_t* path, int32_t* warps, int32_t* rows) {
  if (*path == MLA_KV_PATH_AUTO) mla_kv_choose_auto(n, &shape, path, warps, rows);
  char why[512];
  const int32_t status = mla_kv_path_blocker(*path, *warps, &shape, why, sizeof why);
  return status == MLA_KV_OK ? MLA_KV_OK : FailWith(status, why);
}

// The kernels' format of a quantizing write, false for the formats that have none yet.
bool Fp8FormatOf(int32_t format, Fp8Format* out) {
  switch (format) {
    case MLA_KV_FORMAT_FP8_E4M3: *out = Fp8Format::kFlatE4m3; return true;
    case MLA_KV_FORMAT_FP8_E5M2: *out = Fp8Format::kFlatE5m2; return true;
    case MLA_KV_FORMAT_FP8_DS_MLA: *out = Fp8Format::kDsMla; return true;
    case MLA_KV_FORMAT_FP8_DS_V4: *out = Fp8Format::kDsV4; return true;
    case MLA_KV_FORMAT_FP8_INDEXER: *out = Fp8Format::kIndexer; return true;
    default: return false;
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
    // Its error slot now, while nothing captures it: a first write under capture could not grow the pool.
    OutOfRangeWord* slot = nullptr;
    const cudaError_t e = g_errors.StreamSlot(device, s, &slot);
    if (e != cudaSuccess) {
      cudaStreamDestroy(s);
      return FailCuda(e, "allocating the stream's error slot");
    }
    *out_stream = s;
    return MLA_KV_OK;
  });
}

// The error slot of `stream` goes back to the pool once the work issued on it so far is done.
static int32_t ReleaseErrorSlot(int32_t device, cudaStream_t stream, const char* what) {
  if (g_errors.Capturing(device, stream)) {
    return Fail(MLA_KV_ERR_INVALID_ARGUMENT, "%s while the stream is being captured; end the capture first", what);
  }
  const int32_t capturing = RequireNotCapturing(stream, what);
  if (capturing != MLA_KV_OK) return capturing;
  const cudaError_t e = g_errors.Release(device, stream);
  if (e != cudaSuccess) return FailCuda(e, "releasing the stream's error slot");
  return MLA_KV_OK;
}

int32_t mla_kv_stream_destroy(int32_t device, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(stream != nullptr, "the default stream cannot be destroyed");
    MLA_KV_USE_DEVICE(device);
    const int32_t released = ReleaseErrorSlot(device, AsStream(stream), "a stream cannot be destroyed");
    if (released != MLA_KV_OK) return released;
    MLA_KV_CUDA_CHECK(cudaStreamDestroy(AsStream(stream)));
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_release(int32_t device, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_USE_DEVICE(device);
    return ReleaseErrorSlot(device, AsStream(stream), "a stream's error slot cannot be released");
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
    // The capture's own slot, taken before the capture begins so that the pool may grow.
    cudaError_t e = g_errors.BeginCapture(device, AsStream(stream));
    if (e != cudaSuccess) return FailCuda(e, "allocating the capture's error slot");
    // Thread-local mode: only this thread's unsafe calls invalidate the capture, so other threads
    // of the process keep working while one captures.
    e = cudaStreamBeginCapture(AsStream(stream), cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
      g_errors.AbandonCapture(device, AsStream(stream));
      return FailCuda(e, "cudaStreamBeginCapture");
    }
    return MLA_KV_OK;
  });
}

int32_t mla_kv_stream_end_capture(int32_t device, void* stream, void** out_graph) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_graph != nullptr, "out_graph is NULL");
    MLA_KV_USE_DEVICE(device);
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(AsStream(stream), &graph);
    if (e != cudaSuccess) {
      g_errors.AbandonCapture(device, AsStream(stream));
      return FailCuda(e, "cudaStreamEndCapture");
    }
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      g_errors.AbandonCapture(device, AsStream(stream));
      return FailCuda(e, "cudaGraphInstantiate");
    }
    e = g_errors.EndCapture(device, AsStream(stream), exec);
    if (e != cudaSuccess) {
      cudaGraphExecDestroy(exec);
      return FailCuda(e, "handing the capture's error slot to its graph");
    }
    *out_graph = exec;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_graph_launch(int32_t device, void* graph, void* stream) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(graph != nullptr, "graph is NULL");
    MLA_KV_USE_DEVICE(device);
    const cudaError_t e = g_errors.LaunchGraph(device, static_cast<cudaGraphExec_t>(graph), AsStream(stream));
    if (e != cudaSuccess) return FailCuda(e, "cudaGraphLaunch (and the move of its error count to the stream)");
    return MLA_KV_OK;
  });
}

int32_t mla_kv_graph_destroy(int32_t device, void* graph) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(graph != nullptr, "graph is NULL");
    MLA_KV_USE_DEVICE(device);
    MLA_KV_CUDA_CHECK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)));
    g_errors.ForgetGraph(static_cast<cudaGraphExec_t>(graph));
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
    const cudaError_t e = cudaEventElapsedTime(out_ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end));
    if (e == cudaErrorInvalidResourceHandle) {
      // What the runtime answers for an event that was never recorded.
      cudaGetLastError();
      return Fail(MLA_KV_ERR_INVALID_ARGUMENT,
                  "start or end was never recorded (cudaEventElapsedTime: %s); record both with mla_kv_event_record",
                  cudaGetErrorString(e));
    }
    if (e != cudaSuccess) return FailCuda(e, "cudaEventElapsedTime");
    return MLA_KV_OK;
  });
}

// ---- the write ------------------------------------------------------------------------------

int32_t mla_kv_path_supported(int32_t device, int32_t path, int32_t* out_supported) {
  return Guard([&]() -> int32_t {
    MLA_KV_REQUIRE(out_supported != nullptr, "out_supported is NULL");
    MLA_KV_REQUIRE(mla_kv_path_known(path), "unknown path %d", path);
    MLA_KV_USE_DEVICE(device);
    *out_supported = path == MLA_KV_PATH_TMA ? (g_devices[device].cc_major >= 9 ? 1 : 0) : 1;
    return MLA_KV_OK;
  });
}

int32_t mla_kv_set_kv_buffer(int32_t device, void* stream, void* cache, int64_t capacity, int64_t cache_row_stride,
                             const void* loc, int32_t loc_elem_bytes, int64_t n, const void* nope,
                             int64_t nope_row_stride, int64_t nope_bytes, const void* rope, int64_t rope_row_stride,
                             int64_t rope_bytes, int64_t reserved_slot, int32_t path, int32_t warps_per_block,
                             int32_t rows_per_warp, int32_t flags) {
  return Guard([&]() -> int32_t {
    const MlaKvCopyArgs args = {cache, capacity, cache_row_stride, loc, loc_elem_bytes, n, nope, nope_row_stride,
                                nope_bytes, rope, rope_row_stride, rope_bytes, reserved_slot, path, warps_per_block,
                                rows_per_warp, flags};
    char why[512];
    const int32_t checked = mla_kv_check_copy(&args, why, sizeof why);
    if (checked != MLA_KV_OK) return FailWith(checked, why);
    MLA_KV_USE_DEVICE(device);
    // The widest vector that divides every address, stride and size of the write.
    const int vec = mla_kv_copy_alignment(&args);
    const MlaKvWriteShape shape = WriteShape(device, 1, 0, mla_kv_copy_row_bytes(&args), vec);
    int32_t warps = warps_per_block, rows = rows_per_warp;
    const int32_t chosen = ChoosePath(n, shape, &path, &warps, &rows);
    if (chosen != MLA_KV_OK) return chosen;
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
    const int32_t slotted = ErrorsForWrite(device, AsStream(stream), &p.errors);
    if (slotted != MLA_KV_OK) return slotted;

    // Before sm_90 there is no programmatic dependent launch; the flag is documented as no effect.
    const bool pdl = (flags & MLA_KV_FLAG_PDL) != 0 && shape.cc_major >= 9;
    cudaError_t e = cudaErrorInvalidValue;
    switch (path) {
      case MLA_KV_PATH_TMA: e = SetKvBufferTma(p, loc_elem_bytes, warps, rows, pdl, AsStream(stream)); break;
      case MLA_KV_PATH_SPECIALIZED:
        e = SetKvBufferSpecialized(p, loc_elem_bytes, warps, rows, pdl, AsStream(stream));
        break;
      case MLA_KV_PATH_SPREAD: e = SetKvBufferSpread(p, loc_elem_bytes, rows, pdl, AsStream(stream)); break;
      default: e = SetKvBufferVector(p, loc_elem_bytes, vec, warps, rows, pdl, AsStream(stream)); break;
    }
    if (e != cudaSuccess) return Fail(MLA_KV_ERR_CUDA, "launch of the %s kernel failed: %s (%s)", mla_kv_path_name(path),
                                      cudaGetErrorString(e), cudaGetErrorName(e));
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
    const MlaKvQuantizedArgs args = {format, scale_rule, cache, capacity, cache_row_stride, page_size, loc,
                                     loc_elem_bytes, n, source_dtype, nope, nope_row_stride, nope_elems, rope,
                                     rope_row_stride, rope_elems, scale, reserved_slot, path, warps_per_block,
                                     rows_per_warp, flags};
    char why[512];
    const int32_t checked = mla_kv_check_quantized(&args, why, sizeof why);
    if (checked != MLA_KV_OK) return FailWith(checked, why);
    MLA_KV_USE_DEVICE(device);
    const int64_t row_bytes = mla_kv_quantized_row_bytes(format, nope_elems, rope_elems);
    const MlaKvWriteShape shape =
        WriteShape(device, 0, mla_kv_format_is_paged(format), row_bytes, mla_kv_quantized_tma_alignment(&args));
    int32_t warps = warps_per_block, rows = rows_per_warp;
    const int32_t chosen = ChoosePath(n, shape, &path, &warps, &rows);
    if (chosen != MLA_KV_OK) return chosen;
    if (n == 0) return MLA_KV_OK;

    const bool flat = mla_kv_format_is_flat(format);
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
    p.page_size = page_size;
    p.scale_rule = mla_kv_resolved_scale_rule(format, scale_rule);
    p.scale = flat ? scale : 1.0f;
    // A power-of-two scale (1 is the common one) divides exactly as a multiplication by its
    // reciprocal, which is exact too as long as it is a normal number.
    int exponent = 0;
    const float mantissa = std::frexp(p.scale, &exponent);
    p.scale_is_power_of_two = mantissa == 0.5f && exponent > -125 && exponent < 126;
    p.reciprocal = p.scale_is_power_of_two ? 1.0f / p.scale : 0.0f;
    // A part with no elements reads nothing, so its address and stride do not limit the loads.
    uint64_t source_bits = 0;
    if (nope != nullptr) source_bits |= reinterpret_cast<uint64_t>(nope) | static_cast<uint64_t>(nope_row_stride);
    if (rope != nullptr) source_bits |= reinterpret_cast<uint64_t>(rope) | static_cast<uint64_t>(rope_row_stride);
    p.sources_vec16 = mla_kv_alignment_of(source_bits) == 16;
    // Stores are 16-byte vectors at multiples of 16 in the row (and 2-byte pairs after a flat
    // row's nope part, a multiple of 16 elements); else byte by byte.
    p.cache_vec = mla_kv_alignment_of(reinterpret_cast<uint64_t>(cache) | static_cast<uint64_t>(cache_row_stride)) == 16;
    const int32_t slotted = ErrorsForWrite(device, AsStream(stream), &p.errors);
    if (slotted != MLA_KV_OK) return slotted;

    const bool pdl = (flags & MLA_KV_FLAG_PDL) != 0 && shape.cc_major >= 9;
    const bool tma = path == MLA_KV_PATH_TMA;
    Fp8Format fp8;
    const cudaError_t e = Fp8FormatOf(format, &fp8)
                              ? SetKvBufferQuantized(p, fp8, source_dtype == MLA_KV_SOURCE_FP16, tma, warps, rows, pdl,
                                                     AsStream(stream))
                              : cudaErrorNotSupported;
    if (e != cudaSuccess) {
      return Fail(MLA_KV_ERR_CUDA, "launch of the %s quantizing kernel (%s) failed: %s (%s)", mla_kv_path_name(path),
                  mla_kv_format_name(format), cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return MLA_KV_OK;
  });
}

int32_t mla_kv_check_errors(int32_t device, void* stream, int64_t* out_count, int64_t* out_first_index) {
  return Guard([&]() -> int32_t {
    MLA_KV_USE_DEVICE(device);
    if (out_count) *out_count = 0;
    if (out_first_index) *out_first_index = 0;
    const cudaStream_t s = AsStream(stream);
    const int32_t capturing = RequireNotCapturing(s, "errors cannot be checked");
    if (capturing != MLA_KV_OK) return capturing;
    OutOfRangeWord* slot = nullptr;
    cudaError_t prepared = g_errors.PrepareCheck(device, s, &slot);
    if (prepared != cudaSuccess) return FailCuda(prepared, "gathering the counts of the graphs launched on the stream");
    if (slot == nullptr) {  // nothing ever wrote on this stream: nothing to report
      MLA_KV_CUDA_CHECK(cudaStreamSynchronize(s));
      return MLA_KV_OK;
    }
    OutOfRangeWord* host = nullptr;
    OutOfRangeWord* mapped = nullptr;
    cudaError_t e = g_errors.TakeResult(device, &host, &mapped);
    if (e != cudaSuccess) return FailCuda(e, "allocating the pinned result of the check");
    // One exchange a word, ordered on the stream after its writes, into pinned host memory; then
    // the wait for this stream alone.
    TakeErrorWord<<<1, 1, 0, s>>>(slot, mapped);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    const OutOfRangeWord word = *host;
    g_errors.GiveResult(device, host, mapped);
    if (e != cudaSuccess) return FailCuda(e, "reading the stream's error slot");
    if (word.count == 0) return MLA_KV_OK;
    if (out_count) *out_count = static_cast<int64_t>(word.count);
    if (out_first_index) *out_first_index = static_cast<int64_t>(word.first_index);
    return Fail(MLA_KV_ERR_OUT_OF_RANGE_LOC,
                "%llu row(s) were skipped because their loc was >= the cache capacity (first at row index %llu)",
                word.count, word.first_index);
  });
}

}  // extern "C"
