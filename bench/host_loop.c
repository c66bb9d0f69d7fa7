/*
 * host_loop.c — the C side of the host-overhead comparison in `bun run bench`: the same
 * mla_kv_set_kv_buffer call that setMlaKvBuffer makes, looped from C with no synchronisation, so
 * calls per second here over calls per second from TypeScript is the cost of the TypeScript layer.
 * Calls are issued in batches of 256 and only the issuing is timed (the stream is drained between
 * batches, untimed), so the launch queue never fills and the figure is host cost, not GPU time.
 * The figure is the median batch, as tinybench's p50 is on the TypeScript side.
 *
 *   build/host_loop <calls> <n> <path 1..4> <warps> <rows>   prints: calls_per_second <x>
 *   path: 1 vector, 2 TMA, 3 specialized, 4 spread (rows are 1024 + 128 bytes: spread takes 3 warps)
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../cuda/include/mla_kv.h"

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != MLA_KV_OK) {                                              \
      fprintf(stderr, "%s failed: %s\n", #call, mla_kv_last_error());       \
      return 1;                                                             \
    }                                                                       \
  } while (0)

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s <calls> <n> <path> <warps> <rows>\n", argv[0]);
    return 2;
  }
  const long calls = atol(argv[1]);
  const long long n = atoll(argv[2]);
  const int path = atoi(argv[3]), warps = atoi(argv[4]), rows = atoi(argv[5]);
  const long long capacity = 1 << 16, nope = 1024, rope = 128, row = nope + rope;
  void *cache, *loc, *knope, *krope, *stream;
  CHECK(mla_kv_malloc(0, (unsigned long long)(capacity * row), &cache));
  CHECK(mla_kv_malloc(0, (unsigned long long)(n * 8), &loc));
  CHECK(mla_kv_malloc(0, (unsigned long long)(n * nope), &knope));
  CHECK(mla_kv_malloc(0, (unsigned long long)(n * rope), &krope));
  CHECK(mla_kv_memset(0, loc, 0, (unsigned long long)(n * 8), NULL)); /* slot 0 for every row: cheap, valid */
  CHECK(mla_kv_stream_create(0, &stream));
  for (int warm = 0; warm < 1000; ++warm)
    CHECK(mla_kv_set_kv_buffer(0, stream, cache, capacity, row, loc, 8, n, knope, nope, nope, krope, rope, rope, -1, path,
                               warps, rows, 0));
  CHECK(mla_kv_stream_synchronize(0, stream));
  const int batch = 256;
  const long batches = (calls + batch - 1) / batch;
  double* per_call = malloc(sizeof(double) * (size_t)batches);
  if (!per_call) return 1;
  for (long k = 0; k < batches; ++k) {
    const double t0 = now_s();
    for (int i = 0; i < batch; ++i)
      CHECK(mla_kv_set_kv_buffer(0, stream, cache, capacity, row, loc, 8, n, knope, nope, nope, krope, rope, rope, -1, path,
                                 warps, rows, 0));
    per_call[k] = (now_s() - t0) / batch;
    CHECK(mla_kv_stream_synchronize(0, stream));
  }
  qsort(per_call, (size_t)batches, sizeof(double), compare_doubles);
  printf("calls_per_second %.1f\n", 1.0 / per_call[batches / 2]);
  free(per_call);
  return 0;
}
