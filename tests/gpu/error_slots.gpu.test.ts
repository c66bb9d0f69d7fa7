/**
 * Per-stream out-of-range reporting on a real GPU, through the C ABI itself (mla_kv_set_kv_buffer,
 * mla_kv_check_errors, graphs): writes on two streams at once each report only their own skipped
 * rows, a graph reports on the stream it is launched on, and the bytes of every write still match
 * the host reference. tests/ffi/error_slots.test.ts checks the same rules on the host fixture.
 */
import { describe, expect, it } from "bun:test";
import { allocTensor, fromHost, Stream, type DeviceTensor } from "../../mod.ts";
import { native } from "../../ffi/native.ts";
import { MLA_KV_ERR_INVALID_ARGUMENT, MLA_KV_ERR_OUT_OF_RANGE_LOC, MLA_KV_OK, MLA_KV_PATH_VECTOR } from "../../ffi/abi.ts";
import { asBytes, firstDifference, gpuSuiteName, locTensor, poison, POISON, probeGpu, referenceWrite, Rng } from "../helpers/gpu.ts";

const gpu = probeGpu();
const SEED = Number(process.env.MLA_KV_TEST_SEED ?? 20261124);
const NOPE = 1024; // bytes: bf16 512 + 64
const ROPE = 128;
const ROW = NOPE + ROPE;

interface Checked {
  status: number;
  count: number;
  first: number;
}

/** mla_kv_check_errors on one stream handle. */
function check(stream: number): Checked {
  const count = new BigInt64Array(1);
  const first = new BigInt64Array(1);
  const status = native().mla_kv_check_errors(0, stream, count, first);
  return { status, count: Number(count[0]), first: Number(first[0]) };
}

const CLEAN: Checked = { status: MLA_KV_OK, count: 0, first: 0 };

/** One write's tensors and the cache it must leave (poison where nothing is written). */
interface Write {
  cache: DeviceTensor;
  capacity: number;
  slots: number[];
  loc: DeviceTensor;
  nope: DeviceTensor;
  rope: DeviceTensor;
  want: Uint8Array;
  free(): void;
}

/** n rows of random bytes into distinct random slots of a poisoned cache; `bad` row indices get
 *  slots past the capacity (they must be skipped and counted). */
function makeWrite(rng: Rng, n: number, capacity: number, bad: readonly number[]): Write {
  const slots = rng.uniqueSlots(n, capacity);
  for (const [k, i] of bad.entries()) slots[i] = capacity + k * 1000;
  const nopeBytes = rng.bytes(n * NOPE);
  const ropeBytes = rng.bytes(n * ROPE);
  const cache = allocTensor("bf16", [capacity, ROW / 2]);
  poison(cache, capacity * ROW);
  const nope = fromHost(new Uint16Array(nopeBytes.buffer), "bf16", [n, NOPE / 2]);
  const rope = fromHost(new Uint16Array(ropeBytes.buffer), "bf16", [n, ROPE / 2]);
  const loc = locTensor("i64", slots);
  const want = referenceWrite({
    cache: new Uint8Array(capacity * ROW).fill(POISON),
    cacheRowStride: ROW,
    capacity,
    loc: slots,
    nope: nopeBytes,
    nopeRowStride: NOPE,
    nopeBytes: NOPE,
    rope: ropeBytes,
    ropeRowStride: ROPE,
    ropeBytes: ROPE,
  });
  return {
    cache, capacity, slots, loc, nope, rope, want,
    free() {
      for (const t of [cache, loc, nope, rope]) t.free();
    },
  };
}

/** The write on `stream` through the C ABI, vector path, 8 warps. */
function issue(w: Write, stream: number): void {
  const lib = native();
  const status = lib.mla_kv_set_kv_buffer(0, stream, w.cache.ptr, w.capacity, ROW, w.loc.ptr, 8, w.slots.length, w.nope.ptr, NOPE, NOPE,
    w.rope.ptr, ROPE, ROPE, -1, MLA_KV_PATH_VECTOR, 8, 1, 0);
  if (status !== MLA_KV_OK) throw new Error(`mla_kv_set_kv_buffer: ${lib.mla_kv_last_error()}`);
}

function captureGraph(stream: Stream, body: () => void): number {
  const lib = native();
  if (lib.mla_kv_stream_begin_capture(0, stream.handle) !== MLA_KV_OK) throw new Error(lib.mla_kv_last_error());
  body();
  const out = new BigUint64Array(1);
  if (lib.mla_kv_stream_end_capture(0, stream.handle, out) !== MLA_KV_OK) throw new Error(lib.mla_kv_last_error());
  return Number(out[0]);
}

function launch(graph: number, stream: Stream): void {
  const lib = native();
  if (lib.mla_kv_graph_launch(0, graph, stream.handle) !== MLA_KV_OK) throw new Error(lib.mla_kv_last_error());
}

function cacheDifference(w: Write): string | null {
  return firstDifference(asBytes(w.cache.download() as ArrayBufferView), w.want, ROW);
}

describe.skipIf(!gpu.ok)(gpuSuiteName("per-stream error slots"), () => {
  it("reports out-of-range rows of two streams writing at once each on its own stream only", () => {
    const rng = new Rng(SEED + 41);
    using a = Stream.create(0);
    using b = Stream.create(0);
    // Large enough that the two streams' kernels overlap on the GPU.
    const onA = makeWrite(rng, 20000, 24000, [7, 12345, 19999]);
    const onB = makeWrite(rng, 20000, 24000, []);
    try {
      for (let k = 0; k < 4; ++k) {
        issue(onA, a.handle);
        issue(onB, b.handle);
      }
      expect(check(b.handle)).toEqual(CLEAN);
      expect(check(0)).toEqual(CLEAN); // the default stream wrote nothing
      expect(check(a.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 12, first: 7 });
      expect(check(a.handle)).toEqual(CLEAN); // read and cleared
      expect(cacheDifference(onA)).toBeNull();
      expect(cacheDifference(onB)).toBeNull();
    } finally {
      onA.free();
      onB.free();
    }
  });

  it("reports a graph captured on one stream and replayed on another on the replay's stream", () => {
    const rng = new Rng(SEED + 42);
    using a = Stream.create(0);
    using b = Stream.create(0);
    const w = makeWrite(rng, 3000, 4000, [3, 9]);
    const graph = captureGraph(a, () => issue(w, a.handle));
    try {
      expect(check(a.handle)).toEqual(CLEAN); // capturing runs nothing
      launch(graph, b);
      launch(graph, b);
      expect(check(a.handle)).toEqual(CLEAN);
      expect(check(b.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 4, first: 3 });
      launch(graph, a);
      expect(check(b.handle)).toEqual(CLEAN);
      expect(check(a.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 2, first: 3 });
      expect(cacheDifference(w)).toBeNull();
    } finally {
      expect(native().mla_kv_graph_destroy(0, graph)).toBe(MLA_KV_OK);
      w.free();
    }
  });

  it("gives each of two back-to-back replays on two streams its own count", () => {
    const rng = new Rng(SEED + 43);
    using a = Stream.create(0);
    using b = Stream.create(0);
    const w = makeWrite(rng, 20000, 24000, [100, 200, 300]);
    const graph = captureGraph(a, () => issue(w, a.handle));
    try {
      for (let k = 0; k < 3; ++k) {
        launch(graph, a);
        launch(graph, b);
      }
      expect(check(a.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 9, first: 100 });
      expect(check(b.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 9, first: 100 });
      expect(cacheDifference(w)).toBeNull();
    } finally {
      expect(native().mla_kv_graph_destroy(0, graph)).toBe(MLA_KV_OK);
      w.free();
    }
  });

  it("drops a released stream's unchecked count, and a later write on it starts clean", () => {
    const rng = new Rng(SEED + 44);
    using a = Stream.create(0);
    const bad = makeWrite(rng, 64, 128, [5]);
    const good = makeWrite(rng, 64, 128, [40]);
    try {
      issue(bad, a.handle);
      expect(native().mla_kv_stream_release(0, a.handle)).toBe(MLA_KV_OK);
      issue(good, a.handle);
      expect(check(a.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 1, first: 40 });
      expect(cacheDifference(good)).toBeNull();
    } finally {
      bad.free();
      good.free();
    }
  });

  it("keeps reporting correctly after many streams came and went (slots are reused clean)", () => {
    const rng = new Rng(SEED + 45);
    const w = makeWrite(rng, 32, 64, [31]);
    try {
      for (let k = 0; k < 150; ++k) {
        using s = Stream.create(0);
        issue(w, s.handle);
        if (k % 2 === 0) expect(check(s.handle)).toEqual({ status: MLA_KV_ERR_OUT_OF_RANGE_LOC, count: 1, first: 31 });
        // Odd streams are destroyed with their count unchecked: the next owner of the slot must not see it.
      }
      using last = Stream.create(0);
      expect(check(last.handle)).toEqual(CLEAN);
    } finally {
      w.free();
    }
  });

  it("refuses the time between two events when one was never recorded", () => {
    const lib = native();
    const event = () => {
      const out = new BigUint64Array(1);
      expect(lib.mla_kv_event_create(0, out)).toBe(MLA_KV_OK);
      return Number(out[0]);
    };
    const start = event();
    const end = event();
    try {
      expect(lib.mla_kv_event_record(0, start, 0)).toBe(MLA_KV_OK);
      expect(lib.mla_kv_event_elapsed_ms(0, start, end, new Float32Array(1))).toBe(MLA_KV_ERR_INVALID_ARGUMENT);
      expect(lib.mla_kv_last_error()).toContain("never recorded");
    } finally {
      lib.mla_kv_event_destroy(0, start);
      lib.mla_kv_event_destroy(0, end);
    }
  });
});
