// designs_lab.cu — the kernel lab, experiment 3: every write design beside the kernels engines
// already have, each checked byte for byte against a CPU reference, then timed the way an engine
// runs it (8 layers captured in a CUDA graph, replayed, CUDA events, best of several repetitions),
// with and without programmatic dependent launch.
//
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o build/designs_lab bench/lab/designs_lab.cu
//   build/designs_lab [--layout bf16|u8] [--quick] [--csv FILE]
//   build/designs_lab --one NAME [--n N] [--pdl]    launch one variant once (for ncu) and exit
//
// Production kernels are included from cuda/ and the peers from bench/peers.cuh, not copied, so
// what the lab times is what ships and what the benchmark compares with.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/specialized_copy.cuh"
#include "../../cuda/spread_copy.cuh"
#include "../../cuda/tma_store.cuh"
#include "../../cuda/vector_copy.cuh"
#include "../peers.cuh"

#define CHECK(call)                                                                                  \
  do {                                                                                               \
    cudaError_t e_ = (call);                                                                         \
    if (e_ != cudaSuccess) {                                                                         \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
      exit(1);                                                                                       \
    }                                                                                                \
  } while (0)

using mla_kv::SetKvBufferParams;

// ---- experiment 3b: leaner small-n kernels (numbered until they win and move into cuda/) -------
// The n = 1 profile (ncu, bench/NOTES.md) shows the seed row design issuing its loc load as its
// 7th instruction, with plain loads, while spread and specialized issue it ~40 instructions in,
// through the read-only path, after runtime nope/rope selects. These variants test each cause.
//   LOADNC  1: sources and loc through ld.global.nc (__ldg); 0: plain ld.global
//   EARLY   1: griddepcontrol.launch_dependents first thing; 0: after the stores
template <typename T>
__device__ __forceinline__ T LabLoad(const T* p, bool nc) {
  return nc ? __ldg(p) : *p;
}

template <int ROW_BYTES, int NOPE_BYTES, int THREADS, bool LOADNC, bool EARLY>
__global__ void __launch_bounds__(THREADS) Spread2Kernel(const SetKvBufferParams p) {
  constexpr int VECS = ROW_BYTES / 16, NOPE_VECS = NOPE_BYTES / 16;
  if (EARLY) mla_kv::allow_next_grid_to_launch();
  mla_kv::wait_for_previous_grid();
  const int64_t i = blockIdx.x;
  const int j = threadIdx.x;
  const int64_t slot = LabLoad(static_cast<const int64_t*>(p.loc) + i, LOADNC);
  uint4 v;
  if (j < VECS) {
    const uint8_t* src = j < NOPE_VECS ? p.nope + i * p.nope_row_stride + j * 16
                                       : p.rope + i * p.rope_row_stride + (j - NOPE_VECS) * 16;
    v = LabLoad(reinterpret_cast<const uint4*>(src), LOADNC);
  }
  const int64_t s = mla_kv::checked_slot(p.errors, p.capacity, p.reserved_slot, slot, i, j);
  if (s >= 0 && j < VECS) reinterpret_cast<uint4*>(p.cache + s * p.cache_row_stride)[j] = v;
  if (!EARLY) mla_kv::allow_next_grid_to_launch();
}

template <int ROW_BYTES, int NOPE_BYTES, int ROWS, bool LOADNC>
__global__ void Specialized2Kernel(const SetKvBufferParams p) {
  constexpr int VECS = ROW_BYTES / 16, NOPE_VECS = NOPE_BYTES / 16, K = (VECS + 31) / 32;
  mla_kv::allow_next_grid_to_launch();
  mla_kv::wait_for_previous_grid();
  const int lane = threadIdx.x & 31;
  const uint32_t first = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * ROWS;
  const uint32_t n = static_cast<uint32_t>(p.n);
  int64_t raw[ROWS];
  uint4 v[ROWS][K];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const uint32_t i = first + r;
    if (i < n) raw[r] = LabLoad(static_cast<const int64_t*>(p.loc) + i, LOADNC);
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const uint32_t i = first + r;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int j = lane + 32 * k;
      if (i < n && (VECS % 32 == 0 || j < VECS)) {
        const uint8_t* src = j < NOPE_VECS ? p.nope + static_cast<uint64_t>(i) * p.nope_row_stride + j * 16
                                           : p.rope + static_cast<uint64_t>(i) * p.rope_row_stride + (j - NOPE_VECS) * 16;
        v[r][k] = LabLoad(reinterpret_cast<const uint4*>(src), LOADNC);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const uint32_t i = first + r;
    if (i >= n) break;
    const int64_t s = mla_kv::checked_slot(p.errors, p.capacity, p.reserved_slot, raw[r], i, lane);
    if (s < 0) continue;
    uint4* dst = reinterpret_cast<uint4*>(p.cache + static_cast<uint64_t>(s) * p.cache_row_stride);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int j = lane + 32 * k;
      if (VECS % 32 == 0 || j < VECS) dst[j] = v[r][k];
    }
  }
}

// code: tens = threads (3: 96, 4: 128), units = LOADNC * 2 + EARLY
template <int ROW, int NOPE>
static cudaError_t Spread2(const SetKvBufferParams& p, int code, bool pdl, cudaStream_t s) {
  const unsigned grid = static_cast<unsigned>(p.n);
  switch (code) {
    case 30: return mla_kv::LaunchWrite(Spread2Kernel<ROW, NOPE, 96, false, false>, grid, 96, 0, s, pdl, p);
    case 31: return mla_kv::LaunchWrite(Spread2Kernel<ROW, NOPE, 96, false, true>, grid, 96, 0, s, pdl, p);
    case 32: return mla_kv::LaunchWrite(Spread2Kernel<ROW, NOPE, 96, true, false>, grid, 96, 0, s, pdl, p);
    case 33: return mla_kv::LaunchWrite(Spread2Kernel<ROW, NOPE, 96, true, true>, grid, 96, 0, s, pdl, p);
    case 40: return mla_kv::LaunchWrite(Spread2Kernel<ROW, NOPE, 128, false, false>, grid, 128, 0, s, pdl, p);
    default: return mla_kv::LaunchWrite(Spread2Kernel<ROW, NOPE, 128, false, true>, grid, 128, 0, s, pdl, p);
  }
}
template <int ROW, int NOPE>
static cudaError_t Specialized2(const SetKvBufferParams& p, int warps, int rows, bool nc, bool pdl, cudaStream_t s) {
  const unsigned grid = static_cast<unsigned>((p.n + warps * rows - 1) / (warps * rows));
#define LAB_S2(R, NC) return mla_kv::LaunchWrite(Specialized2Kernel<ROW, NOPE, R, NC>, grid, warps * 32, 0, s, pdl, p)
  if (nc) { if (rows == 1) LAB_S2(1, true); if (rows == 2) LAB_S2(2, true); LAB_S2(4, true); }
  if (rows == 1) LAB_S2(1, false);
  if (rows == 2) LAB_S2(2, false);
  LAB_S2(4, false);
#undef LAB_S2
}

struct Layout {
  const char* name;
  int elem_bytes;
  int64_t nope_bytes, rope_bytes;
};

enum Kind { kGeneric, kTma, kSpecialized, kSpecialized64, kSpread, kPlainLate, kPlainEarly, kSeedRow, kEmpty, kMemcpy, kSpread2, kSpecialized2, kKinds };

struct Variant {
  std::string name;
  Kind kind;
  int warps, rows;
};

constexpr int kLayers = 8;
// Slots a layer's cache has; --capacity N changes it (the benchmark's scratch set has 65536).
static int64_t kCapacity = 128 * 1024;

struct World {
  Layout L;
  int64_t n_max;
  uint8_t* cache[kLayers];
  uint8_t* nope[kLayers];
  uint8_t* rope[kLayers];
  int64_t* loc[kLayers];
  uint8_t* copy_dst[kLayers];
  mla_kv::OutOfRangeWord* errors;  // the library keeps one per stream; the lab needs only one
};

// The specialized kernel with 64-bit offsets forced, to measure what the 32-bit ones buy.
static cudaError_t Specialized64(const SetKvBufferParams& p, int warps, int rows, bool pdl, cudaStream_t s) {
  const int64_t row = p.nope_bytes + p.rope_bytes;
  if (row == 1152) return mla_kv::LaunchSpecializedSize<1152>(p, 8, false, warps, rows, pdl, s);
  return mla_kv::LaunchSpecializedSize<656>(p, 8, false, warps, rows, pdl, s);
}

static cudaError_t Launch(const Variant& v, const World& w, int layer, int64_t n, bool pdl, cudaStream_t s) {
  const int64_t row = w.L.nope_bytes + w.L.rope_bytes;
  SetKvBufferParams p{w.cache[layer], w.loc[layer], w.nope[layer], w.rope[layer], kCapacity, row,
                      w.L.nope_bytes, w.L.rope_bytes, w.L.nope_bytes, w.L.rope_bytes, n, /*reserved_slot=*/-1, w.errors};
  const int ni = static_cast<int>(n);
  switch (v.kind) {
    case kGeneric: return mla_kv::SetKvBufferVector(p, 8, 16, v.warps, v.rows, pdl, s);
    case kTma: return mla_kv::SetKvBufferTma(p, 8, v.warps, v.rows, pdl, s);
    case kSpecialized: return mla_kv::SetKvBufferSpecialized(p, 8, v.warps, v.rows, pdl, s);
    case kSpecialized64: return Specialized64(p, v.warps, v.rows, pdl, s);
    case kSpread: return mla_kv::SetKvBufferSpread(p, 8, v.rows, pdl, s);
    case kPlainLate:
    case kPlainEarly:
      return mla_kv_bench::PlainWarpCopy(static_cast<int>(row), v.kind == kPlainEarly, pdl, w.cache[layer],
                                         static_cast<int>(row), w.loc[layer], ni, w.nope[layer],
                                         static_cast<int>(w.L.nope_bytes), w.rope[layer],
                                         static_cast<int>(w.L.rope_bytes), s);
    case kSeedRow:
      return mla_kv_bench::SeedRow(w.L.elem_bytes, pdl, w.cache[layer], row, w.loc[layer], ni, w.nope[layer],
                                   w.L.nope_bytes, w.rope[layer], w.L.rope_bytes, s);
    case kEmpty: return mla_kv_bench::EmptyPdl(pdl, s);
    case kSpread2: return row == 1152 ? Spread2<1152, 1024>(p, v.rows, pdl, s) : Spread2<656, 528>(p, v.rows, pdl, s);
    case kSpecialized2:
      return row == 1152 ? Specialized2<1152, 1024>(p, v.warps, v.rows % 10, v.rows >= 10, pdl, s)
                         : Specialized2<656, 528>(p, v.warps, v.rows % 10, v.rows >= 10, pdl, s);
    default: return cudaMemcpyAsync(w.copy_dst[layer], w.nope[layer], n * row, cudaMemcpyDeviceToDevice, s);
  }
}

// Byte-exact check of one variant on layer 0 at size n: poison, write, compare the whole cache.
static bool Check(const Variant& v, World& w, int64_t n, bool pdl, std::mt19937_64& rng) {
  const int64_t row = w.L.nope_bytes + w.L.rope_bytes;
  std::vector<uint8_t> nope(n * w.L.nope_bytes), rope(n * w.L.rope_bytes), cache(kCapacity * row, 0xA5);
  for (auto& b : nope) b = static_cast<uint8_t>(rng());
  for (auto& b : rope) b = static_cast<uint8_t>(rng());
  std::vector<int64_t> slots(kCapacity);
  for (int64_t i = 0; i < kCapacity; ++i) slots[i] = i;
  std::shuffle(slots.begin(), slots.end(), rng);
  std::vector<int64_t> loc(slots.begin(), slots.begin() + n);
  if (n > 3) loc[n / 2] = -1;  // padding rows are skipped
  CHECK(cudaMemcpy(w.nope[0], nope.data(), nope.size(), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(w.rope[0], rope.data(), rope.size(), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(w.loc[0], loc.data(), n * 8, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(w.cache[0], cache.data(), cache.size(), cudaMemcpyHostToDevice));
  CHECK(Launch(v, w, 0, n, pdl, 0));
  CHECK(cudaDeviceSynchronize());
  std::vector<uint8_t> got(cache.size());
  CHECK(cudaMemcpy(got.data(), w.cache[0], got.size(), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < n; ++i) {
    if (loc[i] < 0) continue;
    memcpy(&cache[loc[i] * row], &nope[i * w.L.nope_bytes], w.L.nope_bytes);
    memcpy(&cache[loc[i] * row + w.L.nope_bytes], &rope[i * w.L.rope_bytes], w.L.rope_bytes);
  }
  const bool ok = memcmp(got.data(), cache.data(), got.size()) == 0;
  if (!ok) fprintf(stderr, "MISMATCH: %s at n=%lld pdl=%d\n", v.name.c_str(), static_cast<long long>(n), pdl);
  return ok;
}

// Microseconds per call: 8 layers captured into one graph, replayed `reps` times, best of `tries`.
static double Time(const Variant& v, const World& w, int64_t n, bool pdl, cudaStream_t s) {
  cudaGraph_t g;
  cudaGraphExec_t exec;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int l = 0; l < kLayers; ++l) CHECK(Launch(v, w, l, n, pdl, s));
  CHECK(cudaStreamEndCapture(s, &g));
  CHECK(cudaGraphInstantiate(&exec, g, 0));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  const int reps = n >= 8192 ? 10 : 40, tries = 5;
  CHECK(cudaGraphLaunch(exec, s));  // warm-up
  double best = 1e30;
  for (int t = 0; t < tries; ++t) {
    CHECK(cudaEventRecord(a, s));
    for (int r = 0; r < reps; ++r) CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    best = std::min(best, 1000.0 * ms / (reps * kLayers));
  }
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(g));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return best;
}

static const char* KindName(Kind k) {
  switch (k) {
    case kGeneric: return "generic";
    case kTma: return "tma";
    case kSpecialized: return "specialized";
    case kSpecialized64: return "specialized64";
    case kSpread: return "spread";
    case kPlainLate: return "plain";
    case kPlainEarly: return "plain-early";
    case kSeedRow: return "seed-row";
    case kEmpty: return "empty";
    case kSpread2: return "spread2";
    case kSpecialized2: return "specialized2";
    default: return "memcpy";
  }
}

int main(int argc, char** argv) {
  bool quick = false, one_pdl = false, shared = false;
  const char* only_ns = nullptr;
  const char* one = nullptr;
  const char* csv_path = nullptr;
  int64_t one_n = 1;
  Layout L{"bf16 512+64", 2, 1024, 128};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--quick")) quick = true;
    if (!strcmp(argv[i], "--pdl")) one_pdl = true;
    if (!strcmp(argv[i], "--one") && i + 1 < argc) one = argv[++i];
    if (!strcmp(argv[i], "--n") && i + 1 < argc) one_n = atoll(argv[++i]);
    if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
    if (!strcmp(argv[i], "--capacity") && i + 1 < argc) kCapacity = atoll(argv[++i]);
    // --shared: every layer reads layer 0's sources, as the benchmark's scratch set does.
    if (!strcmp(argv[i], "--shared")) shared = true;
    if (!strcmp(argv[i], "--ns") && i + 1 < argc) only_ns = argv[++i];
    if (!strcmp(argv[i], "--layout") && i + 1 < argc && !strcmp(argv[i + 1], "u8")) L = {"u8 528+128", 1, 528, 128};
  }
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  printf("lab: %s, %d SMs, L2 %d MB, layout %s\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, L.name);

  std::vector<int64_t> ns = {1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  if (only_ns != nullptr) {
    ns.clear();
    for (const char* c = only_ns; *c;) {
      ns.push_back(atoll(c));
      while (*c && *c != ',') ++c;
      if (*c == ',') ++c;
    }
  }
  World w{L, std::max<int64_t>(ns.back(), 4096), {}, {}, {}, {}, {}, nullptr};
  CHECK(cudaMalloc(&w.errors, sizeof(mla_kv::OutOfRangeWord)));
  CHECK(cudaMemset(w.errors, 0, sizeof(mla_kv::OutOfRangeWord)));
  const int64_t row = L.nope_bytes + L.rope_bytes;
  std::mt19937_64 rng(1234);
  for (int l = 0; l < kLayers; ++l) {
    CHECK(cudaMalloc(&w.cache[l], kCapacity * row));
    CHECK(cudaMalloc(&w.nope[l], w.n_max * row));  // room for the memcpy floor too
    CHECK(cudaMalloc(&w.rope[l], w.n_max * L.rope_bytes));
    CHECK(cudaMalloc(&w.loc[l], w.n_max * 8));
    CHECK(cudaMalloc(&w.copy_dst[l], w.n_max * row));
    std::vector<int64_t> slots(kCapacity);
    for (int64_t i = 0; i < kCapacity; ++i) slots[i] = i;
    std::shuffle(slots.begin(), slots.end(), rng);
    CHECK(cudaMemcpy(w.loc[l], slots.data(), w.n_max * 8, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(w.nope[l], 0x3c, w.n_max * row));
    CHECK(cudaMemset(w.rope[l], 0x5a, w.n_max * L.rope_bytes));
  }
  if (shared) {
    for (int l = 1; l < kLayers; ++l) w.nope[l] = w.nope[0], w.rope[l] = w.rope[0];
  }

  std::vector<Variant> vs;
  const auto cfg = [](const char* k, int wp, int r) { return std::string(k) + " w" + std::to_string(wp) + "r" + std::to_string(r); };
  const bool full = getenv("LAB_FULL") != nullptr;
  for (int wp : {1, 2, 4, 8, 16})
    for (int r : {1, 2, 4}) {
      if (full || (wp == 4 && r == 1) || (wp == 8 && r == 2)) vs.push_back({cfg("generic", wp, r), kGeneric, wp, r});
      if (full || wp >= 4) vs.push_back({cfg("specialized", wp, r), kSpecialized, wp, r});
      if (prop.major >= 9 && (full || (wp >= 4 && r == 1))) vs.push_back({cfg("tma", wp, r), kTma, wp, r});
      if (wp >= 4) {
        vs.push_back({cfg("specialized2", wp, r), kSpecialized2, wp, r});
        vs.push_back({cfg("specialized2nc", wp, r), kSpecialized2, wp, 10 + r});
      }
    }
  if (full)
    for (int wp : {2, 4, 8}) vs.push_back({cfg("specialized64", wp, 1), kSpecialized64, wp, 1});
  for (int r : {1, 2, 4}) vs.push_back({cfg("spread", 0, r), kSpread, 0, r});
  for (int code : {30, 31, 32, 33, 40, 41}) vs.push_back({"spread2 c" + std::to_string(code), kSpread2, 0, code});
  vs.push_back({"plain", kPlainLate, 0, 0});
  vs.push_back({"plain-early", kPlainEarly, 0, 0});
  vs.push_back({"seed-row", kSeedRow, 0, 0});

  if (one) {
    for (const auto& v : vs)
      if (v.name == one) {
        CHECK(Launch(v, w, 1, one_n, one_pdl, 0));  // first launch, so a profiler sees this one
        CHECK(cudaDeviceSynchronize());
        printf("lab: ran %s once at n=%lld pdl=%d\n", one, static_cast<long long>(one_n), one_pdl);
        return 0;
      }
    fprintf(stderr, "lab: no variant named %s\n", one);
    return 1;
  }
  int failures = 0;
  for (const auto& v : vs)
    for (bool pdl : {false, true})
      for (int64_t n : {1, 7, 257, 4096}) failures += !Check(v, w, n, pdl, rng);
  printf("lab: correctness %s (%zu variants x 2 launch modes x 4 sizes)\n", failures ? "FAILED" : "ok", vs.size());
  if (failures) return 1;
  {
    std::vector<int64_t> slots(kCapacity);
    for (int64_t i = 0; i < kCapacity; ++i) slots[i] = i;
    std::shuffle(slots.begin(), slots.end(), rng);
    CHECK(cudaMemcpy(w.loc[0], slots.data(), w.n_max * 8, cudaMemcpyHostToDevice));
  }
  vs.push_back({"empty", kEmpty, 0, 0});
  vs.push_back({"memcpy", kMemcpy, 0, 0});

  FILE* csv = csv_path ? fopen(csv_path, "w") : nullptr;
  if (csv) fprintf(csv, "layout,n,pdl,variant,kind,us\n");
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const Kind kinds[] = {kGeneric, kSpecialized, kSpecialized2, kSpread, kSpread2, kTma, kPlainLate, kPlainEarly, kSeedRow, kEmpty, kMemcpy};
  for (bool pdl : {false, true}) {
    printf("\n%s, PDL %s: best config per design (us per call); x = over the best peer\n", L.name, pdl ? "on" : "off");
    printf("%6s", "n");
    for (Kind k : kinds) printf(" %14s", KindName(k));
    printf(" %8s %8s\n", "best ours", "x peer");
    for (int64_t n : ns) {
      if (quick && n != 1 && n != 128 && n != 4096 && n != 16384) continue;
      double best[kKinds];
      std::string best_cfg[kKinds];
      for (double& b : best) b = 1e30;
      for (const auto& v : vs) {
        if (v.kind == kMemcpy && pdl) continue;
        const double us = Time(v, w, n, pdl, s);
        if (csv) fprintf(csv, "%s,%lld,%d,%s,%s,%.4f\n", L.name, static_cast<long long>(n), pdl, v.name.c_str(), KindName(v.kind), us);
        if (us < best[v.kind]) best[v.kind] = us, best_cfg[v.kind] = v.name;
      }
      const double ours = std::min({best[kGeneric], best[kSpecialized], best[kSpecialized64], best[kSpread], best[kTma], best[kSpread2], best[kSpecialized2]});
      const double peer = std::min({best[kPlainLate], best[kPlainEarly], best[kSeedRow]});
      printf("%6lld", static_cast<long long>(n));
      for (Kind k : kinds) printf(" %14.3f", best[k] > 1e29 ? 0.0 : best[k]);
      printf(" %8.3f %8.3f\n", ours, ours / peer);
      {
        for (Kind k : kinds) printf("    %-14s %s\n", KindName(k), best_cfg[k].c_str());
      }
    }
  }
  if (csv) fclose(csv);
  return 0;
}
