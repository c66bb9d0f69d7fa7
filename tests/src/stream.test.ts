import { describe, expect, it } from "bun:test";
import { Graph, Stream, streamHandleFor, timeOnStream } from "../../src/stream.ts";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { thrown } from "../helpers/thrown.ts";

describe("Stream.default", () => {
  it("is the NULL stream of the device", () => {
    const stream = Stream.default(2);
    expect(stream.handle).toBe(0);
    expect(stream.device).toBe(2);
    expect(stream.isDefault).toBe(true);
  });

  it("ignores destroy(), as the legacy stream cannot be destroyed", () => {
    const stream = Stream.default();
    stream.destroy();
    expect(stream.destroyed).toBe(false);
    expect(stream.handle).toBe(0);
  });

  it("refuses to be captured, pointing at Stream.create()", () => {
    const error = thrown(() => Stream.default().capture(() => {}));
    expect(error.code).toBe("CAPTURE");
    expect(error.message).toContain("use a stream from Stream.create()");
  });

  it("refuses a device index that is not an integer", () => {
    expect(thrown(() => Stream.default(-2)).argument).toBe("device");
  });
});

describe("Stream.wrap", () => {
  it("describes a foreign stream by its handle, as a number or a bigint, on the given device", () => {
    const a = Stream.wrap(0x5000, { device: 3 });
    expect([a.handle, a.device, a.owned, a.isDefault]).toEqual([0x5000, 3, false, false]);
    const b = Stream.wrap(0x7f12_3456_7000n);
    expect([b.handle, b.device]).toEqual([0x7f12_3456_7000, 0]);
  });

  const bad: Array<[string, unknown, string]> = [
    ["the NULL stream", 0, "handle"],
    ["a 0n handle", 0n, "handle"],
    ["a negative handle", -1, "handle"],
    ["a handle past 2^53", 2n ** 60n, "handle"],
    ["a string", "0x5000", "handle"],
  ];
  for (const [what, handle, argument] of bad) {
    it(`refuses ${what}`, () => {
      const error = thrown(() => Stream.wrap(handle as number));
      expect([error.code, error.argument]).toEqual(["INVALID_ARGUMENT", argument]);
    });
  }

  it("refuses a device that is not an index, and unknown options", () => {
    expect(thrown(() => Stream.wrap(0x5000, { device: -1 })).argument).toBe("options.device");
    expect(thrown(() => Stream.wrap(0x5000, { stream: 1 } as never)).argument).toBe("options.stream");
  });
});

describe("Stream.create", () => {
  it("refuses a device index that is not an integer, naming it", () => {
    expect(thrown(() => Stream.create(1.5)).argument).toBe("device");
  });
});

describe("streamHandleFor", () => {
  it("gives 0 when no stream is passed", () => {
    expect(streamHandleFor(undefined, 0, "options.stream")).toBe(0);
  });

  it("refuses something that is not a Stream", () => {
    expect(thrown(() => streamHandleFor({ handle: 5 } as never, 0, "options.stream")).message).toBe("options.stream: expected a Stream, got an object");
  });
});

describe("Graph.replay", () => {
  it("refuses a stream of another device before launching", () => {
    const graph = new Graph(0, 0x1000);
    expect(thrown(() => graph.replay(Stream.default(1))).argument).toBe("stream");
  });
});

describe("timeOnStream", () => {
  it("refuses something that is not a Stream", () => {
    expect(thrown(() => timeOnStream(0 as never, () => {})).argument).toBe("stream");
  });

  it("refuses a callback that is not a function", () => {
    expect(thrown(() => timeOnStream(Stream.default(), "go" as never)).argument).toBe("fn");
  });
});

/**
 * Child code: streams `a` and `b`, a u8 cache `kv` of 4 slots of 4 bytes, and 2-byte `nope` and
 * `rope` rows for a write to `slots` (`loc`); slots of 4 and more are past the capacity.
 */
function twoStreamsAndRows(slots: number[]): string {
  return `
    using a = m.Stream.create();
    using b = m.Stream.create();
    using kv = m.allocTensor("u8", [4, 4]);
    using nope = m.allocTensor("u8", [${slots.length}, 2]);
    using rope = m.allocTensor("u8", [${slots.length}, 2]);
    using loc = m.fromHost(Int32Array.from(${JSON.stringify(slots)}), "i32", [${slots.length}]);
  `;
}

const host = hostLibrary();
describe.skipIf(!host)(`streams against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  // No first-use tune: on the host implementation its scratch buffers alone take gigabytes.
  const env = { MLA_KV_LIBRARY: host!, MLA_KV_AUTOTUNE: "0" };

  it("reports capturing only between the start and the end of capture()", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      let inside;
      const graph = stream.capture(() => { inside = stream.isCapturing(); });
      graph.destroy();
      return { before: false, inside, after: stream.isCapturing() };
    `, env);
    expect(result.value, describeChild(result)).toEqual({ before: false, inside: true, after: false });
  });

  it("refuses to synchronise a stream that is being captured, with CAPTURE", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      let code;
      stream.capture(() => { try { stream.synchronize(); } catch (e) { code = e.code; } }).destroy();
      return code;
    `, env);
    expect(result.value, describeChild(result)).toBe("CAPTURE");
  });

  it("ends the capture and rethrows when the captured function throws", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      let message;
      try { stream.capture(() => { throw new Error("model bug"); }); } catch (e) { message = e.message; }
      return { message, capturing: stream.isCapturing() };
    `, env);
    expect(result.value, describeChild(result)).toEqual({ message: "model bug", capturing: false });
  });

  it("refuses an async captured function and leaves the stream usable", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      let code;
      try { stream.capture(async () => {}); } catch (e) { code = e.code; }
      return { code, capturing: stream.isCapturing() };
    `, env);
    expect(result.value, describeChild(result)).toEqual({ code: "CAPTURE", capturing: false });
  });

  it("throws DISPOSED for a destroyed stream, graph or event", () => {
    const result = runInChild(`
      const codes = [];
      const stream = m.Stream.create(); stream.destroy();
      try { stream.synchronize(); } catch (e) { codes.push(e.code); }
      const other = m.Stream.create();
      const graph = other.capture(() => {}); graph.destroy();
      try { graph.replay(other); } catch (e) { codes.push(e.code); }
      const event = m.Event.create(); event.destroy();
      try { event.record(); } catch (e) { codes.push(e.code); }
      other.destroy();
      return codes;
    `, env);
    expect(result.value, describeChild(result)).toEqual(["DISPOSED", "DISPOSED", "DISPOSED"]);
  });

  it("reports skipped rows on the stream that wrote them only: synchronize, download and checkErrors each read their own stream", () => {
    const result = runInChild(`
      ${twoStreamsAndRows([1, 7, 9])}
      const outcome = (fn) => { try { fn(); return "clean"; } catch (e) { return e.code + " " + (e.message.match(/skipped (\\d+) row.*row index (\\d+)/)?.slice(1).join("@") ?? e.message); } };
      const seen = {};
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream: a });
      seen.otherStream = outcome(() => b.synchronize());
      seen.defaultStream = outcome(() => m.checkErrors());
      seen.downloadOnOther = outcome(() => kv.download({ stream: b }));
      seen.own = outcome(() => a.synchronize());
      seen.ownAgain = outcome(() => a.synchronize());
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream: a });
      seen.downloadOnOwn = outcome(() => kv.download({ stream: a }));
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream: b });
      seen.checkErrorsOfStream = outcome(() => m.checkErrors({ stream: b }));
      m.setMlaKvBuffer(kv, loc, nope, rope);
      seen.checkErrorsOfDevice = outcome(() => m.checkErrors({ device: 0 }));
      m.setMlaKvBuffer(kv, loc, nope, rope);
      seen.checkErrorsNumber = outcome(() => m.checkErrors(0));
      return seen;
    `, env);
    expect(result.value, describeChild(result)).toEqual({
      otherStream: "clean",
      defaultStream: "clean",
      downloadOnOther: "clean",
      own: "OUT_OF_RANGE_LOC 2@1",
      ownAgain: "clean",
      downloadOnOwn: "OUT_OF_RANGE_LOC 2@1",
      checkErrorsOfStream: "OUT_OF_RANGE_LOC 2@1",
      checkErrorsOfDevice: "OUT_OF_RANGE_LOC 2@1",
      checkErrorsNumber: "OUT_OF_RANGE_LOC 2@1",
    });
  });

  it("reports what a graph's replay skipped on the stream it was replayed on", () => {
    const result = runInChild(`
      ${twoStreamsAndRows([5, 0])}
      using graph = a.capture(() => m.setMlaKvBuffer(kv, loc, nope, rope, { stream: a }));
      graph.replay(b);
      const code = (s) => { try { s.synchronize(); return "clean"; } catch (e) { return e.code; } };
      return { captured: code(a), replayed: code(b) };
    `, env);
    expect(result.value, describeChild(result)).toEqual({ captured: "clean", replayed: "OUT_OF_RANGE_LOC" });
  });

  it("writes on a wrapped foreign stream, and its destroy() only releases the library's slot for it", () => {
    const result = runInChild(`
      const own = m.Stream.create();
      const foreign = m.Stream.wrap(BigInt(own.handle));
      using kv = m.allocTensor("u8", [4, 4]);
      using nope = m.fromHost(Uint8Array.from([1, 2, 3, 4]), "u8", [2, 2]);
      using rope = m.fromHost(Uint8Array.from([5, 6, 7, 8]), "u8", [2, 2]);
      using loc = m.fromHost(Int32Array.from([2, 9]), "i32", [2]);
      m.setMlaKvBuffer(kv, loc, nope, rope, { stream: foreign });
      let code; try { foreign.synchronize(); } catch (e) { code = e.code; }
      const row = Array.from(kv.download({ stream: foreign }).subarray(8, 12));
      console.error("@@destroy");
      foreign.destroy();
      console.error("@@destroyed");
      own.synchronize(); // still a stream
      own.destroy();
      return { code, row, destroyed: foreign.destroyed, owned: foreign.owned };
    `, { ...env, MLA_KV_TRACE: "1" });
    expect(result.value, describeChild(result)).toEqual({ code: "OUT_OF_RANGE_LOC", row: [1, 2, 5, 6], destroyed: true, owned: false });
    const between = result.stderr.split("@@destroy\n")[1]!.split("@@destroyed")[0]!;
    expect(between).toMatch(/^mla_kv_stream_release\(0, 0x[0-9a-f]+\) -> 0 /m);
    expect(between).not.toContain("mla_kv_stream_destroy");
    expect(result.stderr.split("@@destroyed")[1]).toContain("mla_kv_stream_destroy");
  });

  it("refuses to time from or to an event that was never recorded, saying which", () => {
    const result = runInChild(`
      using a = m.Event.create();
      using b = m.Event.create();
      const seen = [];
      const attempt = (fn) => { try { fn(); seen.push("ran"); } catch (e) { seen.push(e.code + " " + e.argument); } };
      attempt(() => b.elapsedSince(a));
      a.record();
      attempt(() => b.elapsedSince(a));
      b.record();
      attempt(() => b.elapsedSince(a));
      return seen;
    `, env);
    expect(result.value, describeChild(result)).toEqual(["INVALID_ARGUMENT start", "INVALID_ARGUMENT event", "ran"]);
  });

  it("times work on a stream in milliseconds", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      return m.timeOnStream(stream, () => { const end = performance.now() + 20; while (performance.now() < end) {} });
    `, env);
    // The host library's events read the host clock, so the busy loop is what gets timed.
    expect(result.value as number, describeChild(result)).toBeGreaterThanOrEqual(19);
    expect(result.value as number).toBeLessThan(1000);
  });
});
