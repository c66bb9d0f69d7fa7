// error_slots.cuh — per-stream out-of-range reporting: the device word each stream's writes count
// their skipped rows into, where those words come from, and how a graph's count reaches the stream
// it was launched on.
//
// A write passes its stream's slot to its kernels (SetKvBufferParams::errors), so a check reads
// exactly what that stream's writes counted, ordered on that stream, without a device-wide sync.
//
//   streams   Each (device, stream) pair that writes owns one slot, the NULL stream of each device
//             too. mla_kv_stream_create takes one at once; other streams at their first write.
//   captures  mla_kv_stream_begin_capture takes a fresh slot for the stream being captured: the
//             writes captured from it count into that slot, which mla_kv_stream_end_capture hands to
//             the graph. Its replays count into that slot, and a check of the stream the graph was
//             last launched on first moves the slot's count into the stream's (a 1-thread kernel on
//             that stream), so a replay reports where it ran and costs no extra kernel; a launch on
//             another stream first moves the count so far to the previous stream.
//   foreign   A write on a stream captured outside this library (cudaStreamBeginCapture called by
//             the caller) counts into that stream's own slot: the graph keeps that slot's address, so
//             its replays report on the stream it was captured from, wherever they run, and that
//             stream must not be released while such a graph lives. Writes on other streams that
//             join a library capture likewise count into their own streams' slots.
//   reuse     A freed slot may still be counted into by work in flight, so it waits for an event
//             recorded after that work before it is cleared and handed out again.
//
// The pool grows by cudaMalloc only when the stream asking for a slot is not being captured (an
// allocation is invisible to a capture), and always in relaxed capture mode, so the allocation can
// neither fail nor invalidate a capture another thread has open. It starts with kFirstChunk slots
// and keeps kLowWater free for streams that first write while captured.
#pragma once

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "common.cuh"

namespace mla_kv {

// ---- kernels -----------------------------------------------------------------------------------

__global__ void ClearErrorWords(OutOfRangeWord* words, int count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) {
    words[i].count = 0ull;
    words[i].first_index = ~0ull;
  }
}

// Reads and clears a slot, one exchange a word, ordered on the stream after its earlier writes.
__global__ void TakeErrorWord(OutOfRangeWord* slot, OutOfRangeWord* result) {
  result->count = atomicExch(&slot->count, 0ull);
  result->first_index = atomicExch(&slot->first_index, ~0ull);
}

// Moves what a graph replay counted into the launch stream's slot.
__global__ void MoveErrorWord(OutOfRangeWord* from, OutOfRangeWord* to) {
  const unsigned long long count = atomicExch(&from->count, 0ull);
  const unsigned long long first_index = atomicExch(&from->first_index, ~0ull);
  if (count != 0ull) {
    atomicAdd(&to->count, count);
    atomicMin(&to->first_index, first_index);
  }
}

// ---- host side ---------------------------------------------------------------------------------

// Puts the calling thread in relaxed capture mode while it lives: allocations, which stream
// capture calls unsafe, then neither fail nor invalidate a capture of this thread or another.
class RelaxedCaptureScope {
 public:
  RelaxedCaptureScope() : changed_(cudaThreadExchangeStreamCaptureMode(&mode_) == cudaSuccess) {}
  ~RelaxedCaptureScope() {
    if (changed_) cudaThreadExchangeStreamCaptureMode(&mode_);
  }
  RelaxedCaptureScope(const RelaxedCaptureScope&) = delete;
  RelaxedCaptureScope& operator=(const RelaxedCaptureScope&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
  bool changed_;
};

// True when `stream` is not being captured (a failed query counts as captured: do not allocate).
inline bool NotCapturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    cudaGetLastError();  // the query's failure must not look like the next launch's
    return false;
  }
  return status == cudaStreamCaptureStatusNone;
}

// One device's slots and pinned result words. The registry below holds the lock; the device is
// current whenever a method runs.
class DeviceErrorSlots {
 public:
  static constexpr int kFirstChunk = 64;
  static constexpr size_t kLowWater = 8;
  static constexpr int kResultChunk = 16;

  // A clean slot. Grows the pool only when `may_grow`.
  cudaError_t Take(bool may_grow, OutOfRangeWord** out) {
    RelaxedCaptureScope relaxed;
    cudaError_t e = Reclaim();
    if (e != cudaSuccess) return e;
    if (free_.empty() && may_grow) {
      e = Grow();
      if (e != cudaSuccess) return e;
    }
    // Exhausted while captured: allocating now would be invisible to the capture.
    if (free_.empty()) return cudaErrorStreamCaptureUnsupported;
    *out = free_.back();
    free_.pop_back();
    if (may_grow && free_.size() < kLowWater && Grow() != cudaSuccess) cudaGetLastError();  // best effort
    return cudaSuccess;
  }

  // Takes back a slot; kernels may count into it until `done` (owned from now on) completes, or
  // nothing ran against it when `done` is null.
  void Give(OutOfRangeWord* slot, cudaEvent_t done) { quarantine_.push_back({slot, done}); }

  // A pinned host word a check's kernel writes its result into, and its device address.
  cudaError_t TakeResult(OutOfRangeWord** host, OutOfRangeWord** device) {
    if (results_.empty()) {
      RelaxedCaptureScope relaxed;
      OutOfRangeWord* words = nullptr;
      cudaError_t e = cudaHostAlloc(reinterpret_cast<void**>(&words), kResultChunk * sizeof(OutOfRangeWord),
                                    cudaHostAllocMapped);
      if (e != cudaSuccess) return e;
      OutOfRangeWord* mapped = nullptr;
      e = cudaHostGetDevicePointer(reinterpret_cast<void**>(&mapped), words, 0);
      if (e != cudaSuccess) {
        cudaFreeHost(words);
        return e;
      }
      for (int k = 0; k < kResultChunk; ++k) results_.push_back({words + k, mapped + k});
    }
    *host = results_.back().first;
    *device = results_.back().second;
    results_.pop_back();
    return cudaSuccess;
  }

  void GiveResult(OutOfRangeWord* host, OutOfRangeWord* device) { results_.push_back({host, device}); }

 private:
  struct Quarantined {
    OutOfRangeWord* slot;
    cudaEvent_t done;
  };

  cudaError_t PoolStream() {
    if (pool_stream_ != nullptr) return cudaSuccess;
    // Non-blocking: clearing words must never wait for, or be waited on by, the caller's work.
    return cudaStreamCreateWithFlags(&pool_stream_, cudaStreamNonBlocking);
  }

  // Queues the clearing of `count` words on the pool's stream; Finish waits for it.
  cudaError_t Clear(OutOfRangeWord* words, int count) {
    cudaError_t e = PoolStream();
    if (e != cudaSuccess) return e;
    ClearErrorWords<<<(count + 127) / 128, 128, 0, pool_stream_>>>(words, count);
    return cudaGetLastError();
  }

  cudaError_t Finish() { return cudaStreamSynchronize(pool_stream_); }

  cudaError_t Grow() {
    const int chunk = total_ < kFirstChunk ? kFirstChunk : total_;
    OutOfRangeWord* words = nullptr;
    cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&words), chunk * sizeof(OutOfRangeWord));
    if (e != cudaSuccess) return e;
    e = Clear(words, chunk);
    if (e == cudaSuccess) e = Finish();
    if (e != cudaSuccess) {
      cudaFree(words);
      return e;
    }
    for (int k = 0; k < chunk; ++k) free_.push_back(words + k);
    total_ += chunk;
    return cudaSuccess;
  }

  // Clears and frees the quarantined slots whose work has finished.
  cudaError_t Reclaim() {
    bool queried_unfinished = false;
    size_t cleared = 0;
    for (size_t k = 0; k < quarantine_.size();) {
      const Quarantined q = quarantine_[k];
      const cudaError_t state = q.done == nullptr ? cudaSuccess : cudaEventQuery(q.done);
      if (state == cudaErrorNotReady) {
        queried_unfinished = true;
        ++k;
        continue;
      }
      quarantine_[k] = quarantine_.back();
      quarantine_.pop_back();
      if (q.done != nullptr) cudaEventDestroy(q.done);
      if (state != cudaSuccess) {
        cudaGetLastError();
        continue;  // unknown whether work still counts into it: never hand it out again
      }
      const cudaError_t e = Clear(q.slot, 1);
      if (e != cudaSuccess) return e;
      free_.push_back(q.slot);
      ++cleared;
    }
    if (queried_unfinished) cudaGetLastError();  // "not ready" is no error of the next launch
    // Before any of them is handed out, every clear has run.
    return cleared == 0 ? cudaSuccess : Finish();
  }

  std::vector<OutOfRangeWord*> free_;
  std::vector<Quarantined> quarantine_;
  std::vector<std::pair<OutOfRangeWord*, OutOfRangeWord*>> results_;  // host, device
  int total_ = 0;
  cudaStream_t pool_stream_ = nullptr;
};

// Every device's slots, which stream and which graph owns which, behind one lock.
class ErrorRegistry {
 public:
  // The slot a write on `stream` counts into: the capture's while the library captures the
  // stream, else the stream's own (taken at its first write).
  cudaError_t SlotForWrite(int device, cudaStream_t stream, OutOfRangeWord** out) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto capture = captures_.find({device, stream});
    if (capture != captures_.end()) {
      capture->second.used = true;
      *out = capture->second.slot;
      return cudaSuccess;
    }
    return StreamSlotLocked(device, stream, out);
  }

  // The stream's own slot, taken now if it has none.
  cudaError_t StreamSlot(int device, cudaStream_t stream, OutOfRangeWord** out) {
    std::lock_guard<std::mutex> lock(mutex_);
    return StreamSlotLocked(device, stream, out);
  }

  // Frees the stream's slot once the work issued on the stream so far has finished. The caller
  // checked that the stream is not being captured.
  cudaError_t Release(int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = streams_.find({device, stream});
    // What graphs last launched here counted was this stream's to report: it goes with the slot.
    for (auto& [graph, record] : graphs_) {
      if (record.device != device || !record.launched || record.last_stream != stream) continue;
      if (it != streams_.end()) {
        MoveErrorWord<<<1, 1, 0, stream>>>(record.slot, it->second);
        const cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
      }
      record.launched = false;
    }
    if (it == streams_.end()) return cudaSuccess;
    cudaEvent_t done = nullptr;
    cudaError_t e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
    if (e != cudaSuccess) return e;
    e = cudaEventRecord(done, stream);
    if (e != cudaSuccess) {
      cudaEventDestroy(done);
      return e;
    }
    devices_[device].Give(it->second, done);
    streams_.erase(it);
    return cudaSuccess;
  }

  // A fresh slot for the capture about to begin on `stream`.
  cudaError_t BeginCapture(int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    OutOfRangeWord* slot = nullptr;
    const cudaError_t e = devices_[device].Take(NotCapturing(stream), &slot);
    if (e != cudaSuccess) return e;
    captures_[{device, stream}] = {slot, false};
    return cudaSuccess;
  }

  // The capture did not happen or produced no graph: no kernel ever counted into its slot.
  void AbandonCapture(int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = captures_.find({device, stream});
    if (it == captures_.end()) return;
    devices_[device].Give(it->second.slot, nullptr);
    captures_.erase(it);
  }

  // Hands the capture's slot to the executable graph made from it (or frees it when no captured
  // write used it).
  cudaError_t EndCapture(int device, cudaStream_t stream, cudaGraphExec_t graph) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = captures_.find({device, stream});
    if (it == captures_.end()) return cudaSuccess;
    const Capture capture = it->second;
    captures_.erase(it);
    if (!capture.used) {
      devices_[device].Give(capture.slot, nullptr);
      return cudaSuccess;
    }
    GraphSlot record;
    record.device = device;
    record.slot = capture.slot;
    const cudaError_t e = cudaEventCreateWithFlags(&record.last_move, cudaEventDisableTiming);
    if (e != cudaSuccess) {
      devices_[device].Give(capture.slot, nullptr);  // the caller destroys the graph
      return e;
    }
    graphs_[graph] = record;
    return cudaSuccess;
  }

  // Launches `graph` on `stream`. Its replays count into the graph's own slot, which a check of
  // the stream the graph was last launched on gathers (PrepareCheck): no kernel runs beside a
  // replay, so a replay costs what the graph costs. Only when the graph moves to another stream
  // does what it counted so far move first, on the previous stream (after that stream's replays),
  // into that stream's slot, and this launch wait for the move. A launch into a stream that is being
  // captured moves at once, inside the capture, as that capture's graph cannot be followed later.
  cudaError_t LaunchGraph(int device, cudaGraphExec_t graph, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = graphs_.find(graph);
    if (it == graphs_.end()) return cudaGraphLaunch(graph, stream);
    GraphSlot& record = it->second;
    const bool eager = NotCapturing(stream);
    if (record.launched && record.last_stream != stream) {
      OutOfRangeWord* previous = nullptr;
      cudaError_t e = StreamSlotLocked(device, record.last_stream, &previous);
      if (e != cudaSuccess) return e;
      MoveErrorWord<<<1, 1, 0, record.last_stream>>>(record.slot, previous);
      e = cudaGetLastError();
      if (e == cudaSuccess) e = cudaEventRecord(record.last_move, record.last_stream);
      if (e == cudaSuccess) e = cudaStreamWaitEvent(stream, record.last_move, 0);
      if (e != cudaSuccess) return e;
      record.launched = false;
    }
    cudaError_t e = cudaGraphLaunch(graph, stream);
    if (e != cudaSuccess) return e;
    if (eager) {
      record.launched = true;
      record.last_stream = stream;
      return cudaSuccess;
    }
    OutOfRangeWord* target = nullptr;
    e = StreamSlotLocked(device, stream, &target);
    if (e != cudaSuccess) return e;
    MoveErrorWord<<<1, 1, 0, stream>>>(record.slot, target);
    return cudaGetLastError();
  }

  // Before a check of `stream`: moves what graphs last launched on it counted into its slot (on
  // the stream, after their replays) and gives that slot, or null when nothing ever counted there.
  cudaError_t PrepareCheck(int device, cudaStream_t stream, OutOfRangeWord** out) {
    std::lock_guard<std::mutex> lock(mutex_);
    *out = nullptr;
    auto own = streams_.find({device, stream});
    if (own != streams_.end()) *out = own->second;
    for (auto& [graph, record] : graphs_) {
      if (record.device != device || !record.launched || record.last_stream != stream) continue;
      if (*out == nullptr) {
        const cudaError_t e = StreamSlotLocked(device, stream, out);
        if (e != cudaSuccess) return e;
      }
      MoveErrorWord<<<1, 1, 0, stream>>>(record.slot, *out);
      const cudaError_t e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }

  // The graph is destroyed: its slot is freed once its last move has run.
  // What its replays counted and no check gathered yet goes to the stream it last ran on first.
  void ForgetGraph(cudaGraphExec_t graph) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = graphs_.find(graph);
    if (it == graphs_.end()) return;
    GraphSlot& record = it->second;
    OutOfRangeWord* target = nullptr;
    if (record.launched) {
      if (StreamSlotLocked(record.device, record.last_stream, &target) == cudaSuccess) {
        MoveErrorWord<<<1, 1, 0, record.last_stream>>>(record.slot, target);
      }
      // The slot is reused only after this event: after the last replay, and the move.
      cudaEventRecord(record.last_move, record.last_stream);
      cudaGetLastError();  // best effort: the graph is going either way
    }
    devices_[record.device].Give(record.slot, record.last_move);
    graphs_.erase(it);
  }

  // True while the library captures `stream`.
  bool Capturing(int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    return captures_.count({device, stream}) != 0;
  }

  cudaError_t TakeResult(int device, OutOfRangeWord** host, OutOfRangeWord** mapped) {
    std::lock_guard<std::mutex> lock(mutex_);
    return devices_[device].TakeResult(host, mapped);
  }

  void GiveResult(int device, OutOfRangeWord* host, OutOfRangeWord* mapped) {
    std::lock_guard<std::mutex> lock(mutex_);
    devices_[device].GiveResult(host, mapped);
  }

 private:
  struct Capture {
    OutOfRangeWord* slot;
    bool used;  // a captured write's kernels count into the slot
  };
  struct GraphSlot {
    int device = 0;
    OutOfRangeWord* slot = nullptr;
    cudaEvent_t last_move = nullptr;  // recorded after a move to the previous launch stream
    bool launched = false;
    cudaStream_t last_stream = nullptr;
  };
  using StreamKey = std::pair<int, cudaStream_t>;

  cudaError_t StreamSlotLocked(int device, cudaStream_t stream, OutOfRangeWord** out) {
    auto it = streams_.find({device, stream});
    if (it != streams_.end()) {
      *out = it->second;
      return cudaSuccess;
    }
    OutOfRangeWord* slot = nullptr;
    const cudaError_t e = devices_[device].Take(NotCapturing(stream), &slot);
    if (e != cudaSuccess) return e;
    streams_[{device, stream}] = slot;
    *out = slot;
    return cudaSuccess;
  }

  std::mutex mutex_;
  std::map<int, DeviceErrorSlots> devices_;
  std::map<StreamKey, OutOfRangeWord*> streams_;
  std::map<StreamKey, Capture> captures_;
  std::map<cudaGraphExec_t, GraphSlot> graphs_;
};

}  // namespace mla_kv
