#!/usr/bin/env bun
/**
 * The writes `bun run sanitize` runs under each compute-sanitizer tool: every copy path (vector,
 * specialized, spread and TMA), small and large n, int32 and int64 loc, PDL on and off, padding,
 * the reserved slot and out-of-range loc, a strided source, a graph replay, and the quantizing
 * writes (flat fp8 and ds_mla, whose TMA path stages converted rows in shared memory, and the
 * paged ds_v4 and indexer caches). Each is checked byte for byte too (a clean sanitizer
 * run of a wrong write proves nothing): copies against the plain copy, quantizing writes against
 * the host reference of the conversion. Prints one line: how many writes ran and whether every
 * byte was right.
 */
import { allocTensor, checkErrors, fromHost, MlaKvError, setMlaKvBuffer, Stream, supportsPath, type Path } from "../mod.ts";
import { referenceQuantizedWrite } from "../tests/helpers/fp8_cache_reference.ts";
import { quantizeDsMlaRow, quantizeFlatRow } from "../tests/helpers/fp8_reference.ts";
import { pageBytes } from "../src/write_format.ts";

const stream = Stream.create(0);
const paths: Path[] = supportsPath(0, "tma") ? ["vector", "tma"] : ["vector"];
const copyPaths: Path[] = [...paths, "specialized", "spread"];
let writes = 0, wrong = 0;

function one(n: number, locDtype: "i32" | "i64", path: Path, pdl: boolean, bad: "none" | "padding" | "out-of-range", strided: boolean): void {
  // 7 must not divide the capacity, so the slots (7i + 3) mod capacity are distinct.
  const capacity = (n + 50) % 7 === 0 ? n + 51 : n + 50;
  const width = strided ? 640 : 576;
  const src = new Uint16Array(n * width).map((_, i) => (i * 2654435761) >>> 16 | 1);
  const slots = Array.from({ length: n }, (_, i) => (i * 7 + 3) % capacity);
  if (bad === "padding") slots[0] = -1;
  if (bad === "out-of-range") slots[n - 1] = capacity + 5;
  using cache = allocTensor("bf16", [capacity, 576]);
  const want = new Uint16Array(capacity * 576).fill(0x5a5a);
  cache.upload(want, { stream });
  using kv = fromHost(src, "bf16", [n, width], { stream });
  using loc = locDtype === "i32" ? fromHost(Int32Array.from(slots), "i32", [n], { stream }) : fromHost(BigInt64Array.from(slots, BigInt), "i64", [n], { stream });
  setMlaKvBuffer(cache, loc, kv.narrow(1, 0, 512), kv.narrow(1, 512, 64), { stream, path, pdl });
  ++writes;
  try {
    stream.synchronize();
    if (bad === "out-of-range") throw new Error("the out-of-range row was not reported");
  } catch (error) {
    if (!(bad === "out-of-range" && error instanceof MlaKvError && error.code === "OUT_OF_RANGE_LOC")) throw error;
  }
  slots.forEach((s, i) => {
    if (s < 0 || s >= capacity) return;
    want.set(src.subarray(i * width, i * width + 576), s * 576);
  });
  const got = cache.download({ stream });
  if (got.some((v, i) => v !== want[i])) ++wrong;
}

for (const path of copyPaths)
  for (const n of [1, 300, 5000])
    for (const locDtype of ["i32", "i64"] as const) one(n, locDtype, path, n !== 300, n === 300 ? "padding" : "none", n === 5000);
for (const path of copyPaths) one(200, "i64", path, true, "out-of-range", false);

// A graph replay of a write.
{
  const n = 1000, capacity = 1200;
  using cache = allocTensor("bf16", [capacity, 576]);
  cache.upload(new Uint16Array(capacity * 576).fill(0x5a5a), { stream }); // every byte initialised
  using kNope = fromHost(new Uint16Array(n * 512).map((_, i) => i | 1), "bf16", [n, 512], { stream });
  using kRope = fromHost(new Uint16Array(n * 64).map((_, i) => i | 3), "bf16", [n, 64], { stream });
  using loc = fromHost(Int32Array.from({ length: n }, (_, i) => capacity - 1 - i), "i32", [n], { stream });
  stream.synchronize();
  using graph = stream.capture(() => setMlaKvBuffer(cache, loc, kNope, kRope, { stream }));
  graph.replay(stream);
  graph.replay(stream);
  stream.synchronize();
  writes += 2;
  const got = cache.download({ stream });
  if (got[(capacity - 1) * 576] !== 1 || got[(capacity - n) * 576 + 512] !== (((n - 1) * 64) | 3)) ++wrong;
}
// Quantizing writes, with padding and a reserved slot: flat e4m3 and ds_mla, from bf16 and fp16.
for (const path of paths) {
  for (const [format, source, n] of [["fp8_e4m3", "bf16", 300], ["fp8_ds_mla", "fp16", 300], ["fp8_ds_mla", "bf16", 3000]] as const) {
    const capacity = (n + 50) % 7 === 0 ? n + 51 : n + 50; // distinct slots, as above
    const rowBytes = format === "fp8_ds_mla" ? 656 : 576;
    const src = new Uint16Array(n * 576).map((_, i) => ((i * 2654435761) >>> 17) & 0xbfff);
    const slots = Array.from({ length: n }, (_, i) => (i * 7 + 3) % capacity);
    slots[1] = -1;
    slots[2] = 0; // the reserved slot
    using cache = allocTensor(format === "fp8_ds_mla" ? "u8" : "fp8_e4m3", [capacity, rowBytes]);
    const want = new Uint8Array(capacity * rowBytes).fill(0x5a);
    cache.upload(want, { stream });
    using kv = fromHost(src, source, [n, 576], { stream });
    using loc = fromHost(Int32Array.from(slots), "i32", [n], { stream });
    const options = format === "fp8_ds_mla" ? ({ format } as const) : { scale: 0.25 };
    setMlaKvBuffer(cache, loc, kv.narrow(1, 0, 512), kv.narrow(1, 512, 64), { stream, path, reservedSlot: 0, ...options });
    ++writes;
    slots.forEach((s, i) => {
      if (s <= 0) return;
      const nope = src.subarray(i * 576, i * 576 + 512), rope = src.subarray(i * 576 + 512, i * 576 + 576);
      want.set(format === "fp8_ds_mla" ? quantizeDsMlaRow(nope, rope, source) : quantizeFlatRow(nope, rope, source, "e4m3", 0.25), s * rowBytes);
    });
    const got = cache.download({ stream }) as Uint8Array;
    if (got.some((v, i) => v !== want[i])) ++wrong;
  }
}

// The paged caches (vector path): DeepSeek V4 with 64 tokens a page, the indexer with 48.
for (const [format, nopeElems, ropeElems, pageSize] of [["fp8_ds_v4", 448, 64, 64], ["fp8_indexer", 128, 0, 48]] as const) {
  const n = 500, pages = 16, capacity = pages * pageSize;
  const stride = pageBytes(format, pageSize);
  const width = nopeElems + ropeElems;
  const src = new Uint16Array(n * width).map((_, i) => ((i * 2654435761) >>> 17) & 0xbfff);
  const slots = Array.from({ length: n }, (_, i) => (i * 7 + 3) % capacity);
  slots[1] = -1;
  slots[2] = 0; // the reserved slot
  using cache = allocTensor("u8", [pages, stride]);
  const want = new Uint8Array(pages * stride).fill(0x5a);
  cache.upload(want, { stream });
  using kv = fromHost(src, "bf16", [n, width], { stream });
  using loc = fromHost(Int32Array.from(slots), "i32", [n], { stream });
  const kRope = ropeElems === 0 ? undefined : kv.narrow(1, nopeElems, ropeElems);
  setMlaKvBuffer(cache, loc, kv.narrow(1, 0, nopeElems), kRope, { stream, format, pageSize, reservedSlot: 0 });
  ++writes;
  referenceQuantizedWrite({
    format, source: "bf16", cache: want, capacity, cacheRowStride: stride, pageSize, loc: slots,
    nope: src, nopeStride: width, nopeElems, rope: src.subarray(nopeElems), ropeStride: width, ropeElems, reservedSlot: 0,
  });
  const got = cache.download({ stream }) as Uint8Array;
  if (got.some((v, i) => v !== want[i])) ++wrong;
}

checkErrors({ stream });
stream.destroy();
console.log(`sanitize-cases: ${writes} writes, ${wrong === 0 ? "every byte right" : `${wrong} WRONG`}`);
process.exit(wrong === 0 ? 0 : 1);
