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

const host = hostLibrary();
describe.skipIf(!host)(`streams against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const env = { MLA_KV_LIBRARY: host! };

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
