/**
 * CUDA streams, graphs and events, as far as mla-kv's users need them: order work, capture a
 * decode step into a graph and replay it, and time work on the GPU.
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { beginCapture, endCapture, refuseDuringCapture, releaseAll, type GraphHold } from "./capture.ts";
import { checkStreamErrors } from "./error_slots.ts";
import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import { validateDevice, validateOptionKeys, validatePointer } from "./validate.ts";

function readHandle(out: BigUint64Array): number {
  return Number(out[0]);
}

function isThenable(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

function validateCallback(fn: unknown, argument: string): asserts fn is () => unknown {
  if (typeof fn !== "function") throw invalidArgument(argument, `expected a function, got ${describeValue(fn)}`);
}

/**
 * A CUDA stream on one device. Work issued on one stream runs in order; mla-kv never
 * synchronises behind the caller's back, so results are visible to the host only after
 * {@link Stream.synchronize} (or a {@link DeviceTensor.download}, which synchronises).
 */
export class Stream {
  /** The device the stream belongs to. */
  readonly device: number;
  /** True when {@link Stream.destroy} destroys the CUDA stream: one made by {@link Stream.create}. */
  readonly owned: boolean;
  readonly #handle: number;
  #destroyed = false;

  private constructor(device: number, handle: number, owned: boolean) {
    this.device = device;
    this.#handle = handle;
    this.owned = owned;
  }

  /** Creates a new stream on `device` (default 0). Destroy it with {@link Stream.destroy} (or `using`). */
  static create(device?: number): Stream {
    const index = device === undefined ? 0 : validateDevice(device, "device");
    const out = new BigUint64Array(1);
    // An index the caller passed is to blame when there is no such device; none passed, none is.
    check(native().mla_kv_stream_create(index, out), "mla_kv_stream_create", device === undefined ? undefined : "device");
    return new Stream(index, readHandle(out), true);
  }

  /**
   * A stream someone else made (another library's `cudaStream_t`, as a number or bigint) on
   * `options.device` (default 0), for writes and checks. mla-kv never destroys it: its
   * {@link Stream.destroy} only frees the error slot the library keeps for it, and must be called
   * before the owner destroys the stream.
   */
  static wrap(handle: number | bigint, options?: { device?: number }): Stream {
    const opts = validateOptionKeys(options, "options", ["device"]);
    const device = validateDevice(opts?.device ?? 0, "options.device");
    if (handle === 0 || handle === 0n) {
      throw invalidArgument("handle", "expected a stream another library created; the legacy default stream is Stream.default()");
    }
    return new Stream(device, validatePointer(handle, "handle", "cudaStream_t"), false);
  }

  /**
   * The legacy default (NULL) stream of `device`: it waits for, and is waited on by, all other
   * blocking streams. Convenient, but it cannot be captured into a graph.
   */
  static default(device = 0): Stream {
    validateDevice(device, "device");
    return new Stream(device, 0, false);
  }

  /** The raw `cudaStream_t` as a number (0 for the default stream). */
  get handle(): number {
    if (this.#destroyed) throw new MlaKvError("DISPOSED", "this Stream was destroyed", "stream");
    return this.#handle;
  }

  /** True for the legacy default stream. */
  get isDefault(): boolean {
    return this.#handle === 0;
  }

  /** True once {@link Stream.destroy} ran. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Waits for the work on this stream only, then reports rows that writes on it skipped because
   * of an out-of-range loc (see {@link checkErrors}); other streams' reports stay theirs.
   *
   * @throws {MlaKvError} `CAPTURE` while a stream is being captured (waiting would invalidate
   * the capture); `OUT_OF_RANGE_LOC` when earlier writes on this stream skipped rows.
   */
  synchronize(): void {
    const handle = this.handle;
    refuseDuringCapture("Stream.synchronize()", "waiting would invalidate the capture");
    if (this.isCapturing()) {
      throw new MlaKvError("CAPTURE", "Stream.synchronize() cannot run while the stream is being captured; synchronize after capture() returns", "stream");
    }
    checkStreamErrors(this.device, handle);
  }

  /** True while this stream is being captured into a graph. */
  isCapturing(): boolean {
    const out = new Int32Array(1);
    check(native().mla_kv_stream_is_capturing(this.device, this.handle, out), "mla_kv_stream_is_capturing");
    return out[0] === 1;
  }

  /**
   * Records everything `fn` issues on this stream into a graph and returns it, instantiated and
   * ready to {@link Graph.replay}. Nothing runs during capture. `fn` must be synchronous: the
   * capture ends when it returns, so work after an `await` would fall outside the graph.
   *
   * The graph keeps the device memory of the tensors its writes use alive until it is destroyed:
   * `free()` of such a tensor meanwhile only marks it disposed, and the memory is freed when the
   * last graph holding it is destroyed. Inside `fn`, calls that allocate, free, copy to or from the
   * host or wait for the GPU throw `CAPTURE`.
   *
   * @throws {MlaKvError} `CAPTURE` for the default stream or an async `fn`; whatever `fn` throws
   * is rethrown after the capture is ended and discarded.
   *
   * @example
   * ```ts
   * using stream = Stream.create();
   * const graph = stream.capture(() => setMlaKvBuffer(kvBuffer, loc, kNope, kRope, { stream }));
   * graph.replay(stream); // re-runs the write with whatever loc/kNope/kRope now hold
   * stream.synchronize();
   * ```
   */
  capture(fn: () => void): Graph {
    validateCallback(fn, "fn");
    const handle = this.handle;
    if (handle === 0) {
      throw new MlaKvError("CAPTURE", "the legacy default stream cannot be captured; use a stream from Stream.create()", "stream");
    }
    const symbols = native();
    check(symbols.mla_kv_stream_begin_capture(this.device, handle), "mla_kv_stream_begin_capture");
    let result: unknown;
    const capture = beginCapture(this.device, handle);
    try {
      result = fn();
    } catch (error) {
      this.#abandonCapture(handle, capture.held);
      throw error;
    } finally {
      endCapture(capture);
    }
    if (isThenable(result)) {
      this.#abandonCapture(handle, capture.held);
      throw new MlaKvError("CAPTURE", "capture() needs a synchronous function: the capture ends when fn returns, so work after an await would not be recorded", "fn");
    }
    const out = new BigUint64Array(1);
    try {
      check(symbols.mla_kv_stream_end_capture(this.device, handle, out), "mla_kv_stream_end_capture");
    } catch (error) {
      releaseAll(capture.held);
      throw error;
    }
    return new Graph(this.device, readHandle(out), [...capture.held]);
  }

  // Ends a capture whose body failed, so the stream is usable again, and lets go of the memory
  // its writes held. Its own failures are swallowed on purpose: the error from the body is the
  // one the caller needs to see.
  #abandonCapture(handle: number, held: Iterable<GraphHold>): void {
    const symbols = native();
    const out = new BigUint64Array(1);
    if (symbols.mla_kv_stream_end_capture(this.device, handle, out) === 0 && out[0] !== 0n) {
      symbols.mla_kv_graph_destroy(this.device, readHandle(out));
    }
    try {
      releaseAll(held);
    } catch {
      // the body's error wins
    }
  }

  /**
   * Destroys the stream (no-op for the default stream, and when already destroyed). A wrapped
   * stream is not destroyed: only the library's error slot for it is freed.
   */
  destroy(): void {
    if (this.#destroyed || this.#handle === 0) return;
    if (this.owned) check(native().mla_kv_stream_destroy(this.device, this.#handle), "mla_kv_stream_destroy");
    else check(native().mla_kv_stream_release(this.device, this.#handle), "mla_kv_stream_release");
    this.#destroyed = true;
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}

/** Resolves the `stream` option of a call on `device`: the given stream, or the default one. */
export function streamHandleFor(stream: Stream | undefined, device: number, argument: string): number {
  if (stream === undefined) return 0;
  if (!(stream instanceof Stream)) {
    throw invalidArgument(argument, `expected a Stream, got ${describeValue(stream)}`);
  }
  if (stream.device !== device) {
    throw invalidArgument(argument, `expected a stream on device ${device}, got one on device ${stream.device}`);
  }
  return stream.handle;
}

/**
 * An instantiated CUDA graph from {@link Stream.capture}. Until it is destroyed it keeps alive the
 * device memory of the tensors its writes use (see {@link Stream.capture}).
 */
export class Graph {
  /** The device the graph runs on. */
  readonly device: number;
  readonly #handle: number;
  readonly #held: readonly GraphHold[];
  #destroyed = false;

  /** @internal Graphs come from {@link Stream.capture}. */
  constructor(device: number, handle: number, held: readonly GraphHold[] = []) {
    this.device = device;
    this.#handle = handle;
    this.#held = held;
  }

  /** The raw `cudaGraphExec_t` as a number. */
  get handle(): number {
    if (this.#destroyed) throw new MlaKvError("DISPOSED", "this Graph was destroyed", "graph");
    return this.#handle;
  }

  /** Launches the captured work on `stream` (default: the device's default stream); asynchronous. */
  replay(stream?: Stream): void {
    const handle = this.handle;
    const streamHandle = streamHandleFor(stream, this.device, "stream");
    check(native().mla_kv_graph_launch(this.device, handle, streamHandle), "mla_kv_graph_launch");
  }

  /**
   * Frees the graph (no-op when already destroyed), then lets go of the memory it kept alive: a
   * tensor freed while this graph held it is freed now, if no other graph holds it.
   */
  destroy(): void {
    if (this.#destroyed) return;
    check(native().mla_kv_graph_destroy(this.device, this.#handle), "mla_kv_graph_destroy");
    this.#destroyed = true;
    releaseAll(this.#held);
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}

/** A CUDA event, for timing work on the GPU without host-side noise. */
export class Event {
  readonly device: number;
  readonly #handle: number;
  #destroyed = false;
  // CUDA reports timing of an event never recorded as an opaque failure; this says which one.
  #recorded = false;

  private constructor(device: number, handle: number) {
    this.device = device;
    this.#handle = handle;
  }

  /** Creates an event on `device` (default 0). */
  static create(device?: number): Event {
    const index = device === undefined ? 0 : validateDevice(device, "device");
    const out = new BigUint64Array(1);
    check(native().mla_kv_event_create(index, out), "mla_kv_event_create", device === undefined ? undefined : "device");
    return new Event(index, readHandle(out));
  }

  /** The raw `cudaEvent_t` as a number. */
  get handle(): number {
    if (this.#destroyed) throw new MlaKvError("DISPOSED", "this Event was destroyed", "event");
    return this.#handle;
  }

  /** Records the event on `stream` (default: the device's default stream). */
  record(stream?: Stream): void {
    const streamHandle = streamHandleFor(stream, this.device, "stream");
    check(native().mla_kv_event_record(this.device, this.handle, streamHandle), "mla_kv_event_record");
    this.#recorded = true;
  }

  /** Waits for this event, then returns the milliseconds since `start` was reached. */
  elapsedSince(start: Event): number {
    if (!(start instanceof Event)) throw invalidArgument("start", `expected an Event, got ${describeValue(start)}`);
    if (start.device !== this.device) {
      throw invalidArgument("start", `expected an event of device ${this.device}, got one of device ${start.device}`);
    }
    const startHandle = start.handle;
    const endHandle = this.handle;
    if (!start.#recorded) throw invalidArgument("start", "this event was never recorded; call start.record(stream) before the work to time");
    if (!this.#recorded) {
      throw new MlaKvError("INVALID_ARGUMENT", "Event.elapsedSince(): this event was never recorded; call record(stream) on it after the work to time", "event");
    }
    refuseDuringCapture("Event.elapsedSince()", "it waits for the event");
    const out = new Float32Array(1);
    check(native().mla_kv_event_elapsed_ms(this.device, startHandle, endHandle, out), "mla_kv_event_elapsed_ms");
    return out[0]!;
  }

  /** Frees the event (no-op when already destroyed). */
  destroy(): void {
    if (this.#destroyed) return;
    check(native().mla_kv_event_destroy(this.device, this.#handle), "mla_kv_event_destroy");
    this.#destroyed = true;
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}

/**
 * Runs `fn`, which issues work on `stream`, and returns the GPU time that work took in
 * milliseconds (waits for it to finish). `fn` must be synchronous.
 */
export function timeOnStream(stream: Stream, fn: () => void): number {
  if (!(stream instanceof Stream)) throw invalidArgument("stream", `expected a Stream, got ${describeValue(stream)}`);
  validateCallback(fn, "fn");
  using start = Event.create(stream.device);
  using end = Event.create(stream.device);
  start.record(stream);
  const result: unknown = fn();
  if (isThenable(result)) {
    throw invalidArgument("fn", "expected a synchronous function: the end event is recorded when fn returns, so work after an await would not be timed");
  }
  end.record(stream);
  return end.elapsedSince(start);
}
