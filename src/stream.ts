/**
 * CUDA streams, graphs and events, as far as mla-kv's users need them: order work, capture a
 * decode step into a graph and replay it, and time work on the GPU.
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { beginCapture, endCapture, refuseDuringCapture, releaseAll, type GraphHold } from "./capture.ts";
import { checkErrors } from "./check_errors.ts";
import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import { validateDevice } from "./validate.ts";

function readHandle(out: BigUint64Array): number {
  return Number(out[0]);
}

function isThenable(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

function validateCallback(fn: unknown, argument: string): asserts fn is () => unknown {
  if (typeof fn !== "function") throw invalidArgument(argument, `expected a function, got ${describeValue(fn)}`);
}

/** True while a {@link Stream.capture} is in progress on this thread (first-use tuning waits then). */
export { captureInProgress } from "./capture.ts";

/**
 * A CUDA stream on one device. Work issued on one stream runs in order; mla-kv never
 * synchronises behind the caller's back, so results are visible to the host only after
 * {@link Stream.synchronize} (or a {@link DeviceTensor.download}, which synchronises).
 */
export class Stream {
  /** The device the stream belongs to. */
  readonly device: number;
  readonly #handle: number;
  #destroyed = false;

  private constructor(device: number, handle: number) {
    this.device = device;
    this.#handle = handle;
  }

  /** Creates a new stream on `device`. Destroy it with {@link Stream.destroy} (or `using`). */
  static create(device = 0): Stream {
    validateDevice(device, "device");
    const out = new BigUint64Array(1);
    check(native().mla_kv_stream_create(device, out), "mla_kv_stream_create", "device");
    return new Stream(device, readHandle(out));
  }

  /**
   * The legacy default (NULL) stream of `device`: it waits for, and is waited on by, all other
   * blocking streams. Convenient, but it cannot be captured into a graph.
   */
  static default(device = 0): Stream {
    validateDevice(device, "device");
    return new Stream(device, 0);
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
   * Waits for all work on this stream, then reports rows that writes skipped because of an
   * out-of-range loc (see {@link checkErrors}).
   *
   * @throws {MlaKvError} `CAPTURE` while the stream is being captured (waiting would invalidate
   * the capture); `OUT_OF_RANGE_LOC` when earlier writes skipped rows.
   */
  synchronize(): void {
    const handle = this.handle;
    refuseDuringCapture("Stream.synchronize()", "waiting would invalidate the capture");
    if (this.isCapturing()) {
      throw new MlaKvError("CAPTURE", "Stream.synchronize() cannot run while the stream is being captured; synchronize after capture() returns", "stream");
    }
    check(native().mla_kv_stream_synchronize(this.device, handle), "mla_kv_stream_synchronize");
    checkErrors(this.device);
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

  /** Destroys the stream (no-op for the default stream, and when already destroyed). */
  destroy(): void {
    if (this.#destroyed || this.#handle === 0) return;
    check(native().mla_kv_stream_destroy(this.device, this.#handle), "mla_kv_stream_destroy");
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

  private constructor(device: number, handle: number) {
    this.device = device;
    this.#handle = handle;
  }

  /** Creates an event on `device`. */
  static create(device = 0): Event {
    validateDevice(device, "device");
    const out = new BigUint64Array(1);
    check(native().mla_kv_event_create(device, out), "mla_kv_event_create", "device");
    return new Event(device, readHandle(out));
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
  }

  /** Waits for this event, then returns the milliseconds since `start` was reached. */
  elapsedSince(start: Event): number {
    if (!(start instanceof Event)) throw invalidArgument("start", `expected an Event, got ${describeValue(start)}`);
    refuseDuringCapture("Event.elapsedSince()", "it waits for the event");
    const out = new Float32Array(1);
    check(native().mla_kv_event_elapsed_ms(this.device, start.handle, this.handle, out), "mla_kv_event_elapsed_ms");
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
