/**
 * Per-stream out-of-range reporting as mla_kv.h describes it, on the host fixture through the raw
 * bindings: each stream's check sees only its own writes, a graph's replay reports on the stream
 * it was launched on, a release drops a stream's count. The GPU version of these cases is
 * tests/gpu/error_slots.gpu.test.ts.
 */
import { describe, expect, it } from "bun:test";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";

const host = hostLibrary();

// The body's helpers: a 4-row cache of 4-byte rows, a write of `slots` on a stream, a check.
const PRELUDE = `
  const { native } = await import(root + "/ffi/native.ts");
  const lib = native();
  const ok = (status, what) => { if (status !== 0) throw new Error(what + ": " + lib.mla_kv_last_error()); };
  const alloc = (bytes) => { const out = new BigUint64Array(1); ok(lib.mla_kv_malloc(0, bytes, out), "malloc"); return Number(out[0]); };
  const stream = () => { const out = new BigUint64Array(1); ok(lib.mla_kv_stream_create(0, out), "stream_create"); return Number(out[0]); };
  const cache = alloc(16), nope = alloc(64), rope = alloc(64);
  const write = (s, slots) => {
    const loc = alloc(8 * slots.length);
    ok(lib.mla_kv_memcpy_htod(0, loc, BigInt64Array.from(slots, BigInt), 8 * slots.length, s), "htod");
    ok(lib.mla_kv_set_kv_buffer(0, s, cache, 4, 4, loc, 8, slots.length, nope, 2, 2, rope, 2, 2, -1, 1, 4, 1, 0), "write");
  };
  const check = (s) => {
    const count = new BigInt64Array(1), first = new BigInt64Array(1);
    const status = lib.mla_kv_check_errors(0, s, count, first);
    return { status, count: Number(count[0]), first: Number(first[0]) };
  };
  const CLEAN = { status: 0, count: 0, first: 0 };
`;

function run(body: string) {
  const result = runInChild(PRELUDE + body, { MLA_KV_LIBRARY: host! });
  expect(result.error, describeChild(result)).toBeUndefined();
  return result.value;
}

describe.skipIf(!host)(`per-stream error slots on the host fixture${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("reports out-of-range rows on the stream that wrote them and on no other", () => {
    expect(
      run(`
        const a = stream(), b = stream();
        write(a, [0, 9, 2, 7, 1]);
        write(b, [3, 2]);
        return { b: check(b), nullStream: check(0), a: check(a), again: check(a) };
      `),
    ).toEqual({
      b: { status: 0, count: 0, first: 0 },
      nullStream: { status: 0, count: 0, first: 0 },
      a: { status: 5, count: 2, first: 1 },
      again: { status: 0, count: 0, first: 0 },
    });
  });

  it("adds the counts of several writes and keeps the smallest first index", () => {
    expect(
      run(`
        const a = stream();
        write(a, [0, 1, 2, 3, 4]);
        write(a, [0, 5, 1]);
        write(0, [8]);
        return { a: check(a), nullStream: check(0) };
      `),
    ).toEqual({ a: { status: 5, count: 2, first: 1 }, nullStream: { status: 5, count: 1, first: 0 } });
  });

  it("reports a graph captured on one stream and replayed on another on the replay's stream, once a replay", () => {
    expect(
      run(`
        const a = stream(), b = stream();
        ok(lib.mla_kv_stream_begin_capture(0, a), "begin");
        write(a, [0, 1, 6, 2]);
        const out = new BigUint64Array(1);
        ok(lib.mla_kv_stream_end_capture(0, a, out), "end");
        const graph = Number(out[0]);
        const afterCapture = check(a);
        ok(lib.mla_kv_graph_launch(0, graph, b), "launch");
        ok(lib.mla_kv_graph_launch(0, graph, b), "launch");
        const onB = check(b), onA = check(a);
        ok(lib.mla_kv_graph_launch(0, graph, a), "launch");
        const replayOnA = check(a), bAfter = check(b);
        ok(lib.mla_kv_graph_destroy(0, graph), "destroy");
        return { afterCapture, onB, onA, replayOnA, bAfter };
      `),
    ).toEqual({
      afterCapture: { status: 0, count: 0, first: 0 },
      onB: { status: 5, count: 2, first: 2 },
      onA: { status: 0, count: 0, first: 0 },
      replayOnA: { status: 5, count: 1, first: 2 },
      bAfter: { status: 0, count: 0, first: 0 },
    });
  });

  it("drops a stream's unchecked count when its slot is released", () => {
    expect(
      run(`
        const a = stream();
        write(a, [7]);
        ok(lib.mla_kv_stream_release(0, a), "release");
        const released = check(a);
        write(a, [0, 5]);
        return { released, later: check(a) };
      `),
    ).toEqual({ released: { status: 0, count: 0, first: 0 }, later: { status: 5, count: 1, first: 1 } });
  });

  it("refuses to check, release or destroy a stream while it is being captured", () => {
    const value = run(`
      const a = stream();
      ok(lib.mla_kv_stream_begin_capture(0, a), "begin");
      const status = [lib.mla_kv_check_errors(0, a, new BigInt64Array(1), new BigInt64Array(1)), lib.mla_kv_stream_release(0, a), lib.mla_kv_stream_destroy(0, a)];
      const message = lib.mla_kv_last_error();
      const out = new BigUint64Array(1);
      ok(lib.mla_kv_stream_end_capture(0, a, out), "end");
      return { status, message, destroyed: lib.mla_kv_stream_destroy(0, a) };
    `) as { status: number[]; message: string; destroyed: number };
    expect(value.status).toEqual([1, 1, 1]);
    expect(value.message).toContain("being captured");
    expect(value.destroyed).toBe(0);
  });

  it("refuses the time between events of which one was never recorded", () => {
    const value = run(`
      const event = () => { const out = new BigUint64Array(1); ok(lib.mla_kv_event_create(0, out), "event"); return Number(out[0]); };
      const start = event(), end = event();
      ok(lib.mla_kv_event_record(0, start, 0), "record");
      const ms = new Float32Array(1);
      const status = lib.mla_kv_event_elapsed_ms(0, start, end, ms);
      return { status, message: lib.mla_kv_last_error() };
    `) as { status: number; message: string };
    expect(value.status).toBe(1);
    expect(value.message).toContain("never recorded");
  });
});

describe.skipIf(!host)(`the new copy paths on the host fixture${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("writes on the specialized and spread paths exactly the bytes the vector path and a plain reference write", () => {
    // 1152-byte rows, 40 of them into a 97-row cache at shuffled slots, random sources, poisoned cache.
    const value = run(`
      const n = 40, capacity = 97, row = 1152;
      let x = 0x2545f491;
      const random = (bytes) => Uint8Array.from({ length: bytes }, () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x & 0xff; });
      const slots = Array.from({ length: capacity }, (_, i) => i);
      for (let i = capacity - 1; i > 0; --i) { const j = (random(1)[0] * (i + 1)) >> 8; [slots[i], slots[j]] = [slots[j], slots[i]]; }
      const loc = alloc(8 * n), src = alloc(n * 1024), srcRope = alloc(n * 128), kv = alloc(capacity * row);
      ok(lib.mla_kv_memcpy_htod(0, loc, BigInt64Array.from(slots.slice(0, n), BigInt), 8 * n, 0), "htod");
      const hostNope = random(n * 1024), hostRope = random(n * 128);
      ok(lib.mla_kv_memcpy_htod(0, src, hostNope, n * 1024, 0), "htod");
      ok(lib.mla_kv_memcpy_htod(0, srcRope, hostRope, n * 128, 0), "htod");
      const want = new Uint8Array(capacity * row).fill(0xa5);
      for (let i = 0; i < n; ++i) {
        want.set(hostNope.subarray(i * 1024, (i + 1) * 1024), slots[i] * row);
        want.set(hostRope.subarray(i * 128, (i + 1) * 128), slots[i] * row + 1024);
      }
      const cacheAfter = (path, warps) => {
        ok(lib.mla_kv_memset(0, kv, 0xa5, capacity * row, 0), "memset");
        ok(lib.mla_kv_set_kv_buffer(0, 0, kv, capacity, row, loc, 8, n, src, 1024, 1024, srcRope, 128, 128, -1, path, warps, 1, 0), "write");
        const out = new Uint8Array(capacity * row);
        ok(lib.mla_kv_memcpy_dtoh(0, out, kv, capacity * row, 0), "dtoh");
        return out;
      };
      const vector = cacheAfter(1, 4), specialized = cacheAfter(3, 4), spread = cacheAfter(4, 3);
      const same = (a) => a.every((v, i) => v === want[i]);
      return { vector: same(vector), specialized: same(specialized), spread: same(spread) };
    `);
    expect(value).toEqual({ vector: true, specialized: true, spread: true });
  });
});
