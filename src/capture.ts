/**
 * What this thread's open captures (Stream.capture) know: that one is open, which calls must not
 * run meanwhile, and the device memory each captured write used, which its graph keeps alive.
 *
 * A graph replays the device addresses it was captured with. Were their memory freed while the
 * graph lives, a replay would read and write memory that is no longer the caller's (or is someone
 * else's by then). So every write recorded into a graph holds the allocations of its tensors until
 * the graph is destroyed, and `free()` of such a tensor only marks it disposed; the memory goes
 * back when the last graph holding it is destroyed.
 *
 * @module
 */

import { MlaKvError } from "../ffi/errors.ts";

/** Device memory a graph can keep alive: held once per graph that uses it, released at its end. */
export interface GraphHold {
  hold(): void;
  release(): void;
}

/** Something a captured write used, that may name memory to keep alive (null: none of ours). */
export interface CapturedUse {
  graphHold(): GraphHold | null;
}

/** One capture begun by Stream.capture and not ended yet. */
export interface OpenCapture {
  readonly device: number;
  readonly stream: number;
  /** Every allocation this capture's writes used, each held once. */
  readonly held: Set<GraphHold>;
}

// The capture mode is thread-local, and so is this list: a capture on another thread never
// makes a call here refuse.
const open: OpenCapture[] = [];

/** True while a Stream.capture is in progress on this thread. */
export function captureInProgress(): boolean {
  return open.length > 0;
}

/**
 * Throws `CAPTURE` while a capture is in progress on this thread: `operation` would be recorded
 * into the graph, invalidate it, or wait for work that is only being recorded (`why`).
 */
export function refuseDuringCapture(operation: string, why: string): void {
  if (open.length === 0) return;
  throw new MlaKvError(
    "CAPTURE",
    `${operation} cannot run while a stream is being captured (${why}); call it before stream.capture() or after it returns`,
  );
}

/** @internal Stream.capture: a capture of `stream` on `device` begins. */
export function beginCapture(device: number, stream: number): OpenCapture {
  const capture: OpenCapture = { device, stream, held: new Set() };
  open.push(capture);
  return capture;
}

/** @internal Stream.capture: the capture is over; its holds are now the caller's to hand on or release. */
export function endCapture(capture: OpenCapture): void {
  const at = open.lastIndexOf(capture);
  if (at >= 0) open.splice(at, 1);
}

/** Releases what a capture or a graph held; every hold is released even if one release throws. */
export function releaseAll(held: Iterable<GraphHold>): void {
  let failure: unknown;
  for (const h of held) {
    try {
      h.release();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure !== undefined) throw failure;
}

/**
 * Called by a write issued on `stream` of `device`: when that stream is being captured, the
 * memory of `uses` is held for the graph. Writes call it only while {@link captureInProgress}.
 */
export function recordCapturedUses(device: number, stream: number, uses: readonly CapturedUse[]): void {
  let capture: OpenCapture | undefined;
  for (let i = open.length - 1; i >= 0; i--) {
    if (open[i]!.device === device && open[i]!.stream === stream) {
      capture = open[i];
      break;
    }
  }
  if (capture === undefined) return;
  for (const use of uses) {
    const hold = use.graphHold();
    if (hold === null || capture.held.has(hold)) continue;
    hold.hold();
    capture.held.add(hold);
  }
}
